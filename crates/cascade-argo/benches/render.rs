//! Rendering a 200-job pipeline to an Argo Workflow, against parsing the same file alone,
//! in one run. Each job is distinct (its own script, env with expressions, needs on the
//! previous layer), so no template is shared. Prints medians and the ratio.
//!
//! `cargo bench -p cascade-argo --bench render`
#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::format_push_string,
    reason = "a benchmark program: panics and prints are its interface"
)]

use cascade_argo::{RenderOptions, render};
use cascade_plan::Trigger;
use cascade_spec::config::AdminConfig;
use std::time::{Duration, Instant};

fn pipeline(jobs: usize) -> String {
    let mut text = String::from(
        "name: bench\non: { workflow_dispatch: { inputs: { target: { default: prod } } } }\njobs:\n",
    );
    for i in 0..jobs {
        let needs = if i < 10 {
            String::new()
        } else {
            format!(", needs: [j{}, j{}]", i - 10, i - 5)
        };
        text.push_str(&format!(
            "  j{i}: {{ run: \"make -C part{i} TARGET=${{{{ inputs.target }}}}\", env: {{ STEP: \"{i}\", MODE: \"m-${{{{ inputs.target }}}}\" }}, retry: {{ limit: 1, backoff: 2s }}, timeout: 5m{needs} }}\n"
        ));
    }
    text
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let text = pipeline(200);
    let config = AdminConfig::default();
    let options = RenderOptions::default();
    let rounds = 200;
    let (mut parse, mut full) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Alternate the two so drift on a shared machine hits both alike.
        let t = Instant::now();
        let p = cascade_spec::parse_pipeline("bench.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        parse.push(t.elapsed());
        std::hint::black_box(&p);

        let t = Instant::now();
        let p = cascade_spec::parse_pipeline("bench.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
        let plan = cascade_plan::plan(&p, &Trigger::manual(), &[]).unwrap();
        let manifest = render(&p, &plan, &config, &options).unwrap();
        let json = manifest.to_json();
        full.push(t.elapsed());
        std::hint::black_box(&json);
    }
    let (parse, full) = (median(parse), median(full));
    let render_only = full.saturating_sub(parse);
    println!("200-job pipeline, median of {rounds} rounds");
    println!("| step | time |");
    println!("|---|---|");
    println!("| parse + validate | {:.3} ms |", parse.as_secs_f64() * 1e3);
    println!(
        "| parse + plan + render + to JSON | {:.3} ms |",
        full.as_secs_f64() * 1e3
    );
    println!(
        "| render part (difference) | {:.3} ms |",
        render_only.as_secs_f64() * 1e3
    );
    println!(
        "ratio (parse+plan+render) / parse = {:.2}; target: render < 5 ms",
        full.as_secs_f64() / parse.as_secs_f64()
    );
}
