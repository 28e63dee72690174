//! Every example validates, and its graph output is a snapshot.

use crate::examples_dir;
use cascade_spec::graph;

fn examples() -> Vec<(String, cascade_spec::Pipeline)> {
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "examples/ holds the documented examples");
    files
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            match cascade_spec::parse_pipeline_bytes(&name, &bytes) {
                Ok(p) => (name, p),
                Err(e) => panic!("{name} must validate:\n{}", crate::render(&e)),
            }
        })
        .collect()
}

#[test]
fn every_example_validates() {
    assert!(!examples().is_empty());
}

#[test]
fn graph_of_every_example() {
    for (name, pipeline) in examples() {
        let json = graph::to_json(&pipeline);
        let text = format!(
            "{}\n---\n{}---\n{}",
            serde_json::to_string_pretty(&json).unwrap(),
            graph::to_dot(&pipeline),
            graph::to_mermaid(&pipeline)
        );
        insta::assert_snapshot!(format!("graph_{name}"), text);
    }
}

#[test]
fn monorepo_fans_out_from_detect() {
    let (_, p) = examples()
        .into_iter()
        .find(|(n, _)| n == "monorepo")
        .unwrap();
    let edges: Vec<(String, String)> = p
        .edges()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(edges.contains(&("detect".into(), "lint".into())));
    let lint = p.jobs.get("lint").unwrap();
    assert!(matches!(
        lint.for_each,
        Some(cascade_spec::model::ForEach::Dynamic { .. })
    ));
    assert_eq!(p.on.schedule[0].cron, "0 3 * * *");
}
