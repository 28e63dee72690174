//! The job DAG as text: Graphviz dot, Mermaid, and JSON `{"nodes", "edges"}`.

use crate::model::Pipeline;
use std::fmt::Write;

/// `{"nodes": [ids in file order], "edges": [[dependency, dependent], ...]}`.
pub fn to_json(pipeline: &Pipeline) -> serde_json::Value {
    serde_json::json!({
        "nodes": pipeline.jobs.keys().map(super::model::JobId::as_str).collect::<Vec<_>>(),
        "edges": pipeline.edges().map(|(a, b)| [a.as_str(), b.as_str()]).collect::<Vec<_>>(),
    })
}

/// Graphviz `digraph`, one node per job (fan-outs are marked in the label).
pub fn to_dot(pipeline: &Pipeline) -> String {
    let mut out = String::new();
    let title = pipeline.name.as_deref().unwrap_or("pipeline");
    let _ = writeln!(out, "digraph {} {{", quote(title));
    out.push_str("  rankdir=LR;\n  node [shape=box];\n");
    for (id, job) in &pipeline.jobs {
        let _ = writeln!(
            out,
            "  {} [label={}];",
            quote(id.as_str()),
            quote(&label(job))
        );
    }
    for (a, b) in pipeline.edges() {
        let _ = writeln!(out, "  {} -> {};", quote(a.as_str()), quote(b.as_str()));
    }
    out.push_str("}\n");
    out
}

/// Mermaid `flowchart LR`.
pub fn to_mermaid(pipeline: &Pipeline) -> String {
    let mut out = String::from("flowchart LR\n");
    // Mermaid ids must be plain: number the jobs and put the id in the label.
    for (index, job) in pipeline.jobs.values().enumerate() {
        let _ = writeln!(out, "  j{index}[\"{}\"]", label(job).replace('"', "#quot;"));
    }
    for (a, b) in pipeline.edges() {
        let (Some(ia), Some(ib)) = (
            pipeline.jobs.get_index_of(a.as_str()),
            pipeline.jobs.get_index_of(b.as_str()),
        ) else {
            continue;
        };
        let _ = writeln!(out, "  j{ia} --> j{ib}");
    }
    out
}

fn label(job: &crate::model::Job) -> String {
    let mut label = job.id.to_string();
    if job.for_each.is_some() {
        label.push_str(" (for_each)");
    } else if !job.matrix.is_empty() {
        let n: usize = job.matrix.values().map(Vec::len).product();
        let _ = write!(label, " (matrix ×{n})");
    }
    label
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
