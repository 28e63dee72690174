//! The JSON Schemas against real files: every example validates against the schema of its
//! form (and parses), and the DAG schema refuses what the DAG parser refuses.

use crate::examples_dir;
use cascade_spec::schema::{dag_schema, pipeline_schema};

fn errors(validator: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_example_dag_validates_against_the_dag_schema() {
    let validator = jsonschema::validator_for(&dag_schema()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(examples_dir().join("dags"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "examples/dags holds the DAG examples");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        if let Err(e) = cascade_spec::parse_dag(&name, &text) {
            panic!("{name} must parse:\n{}", crate::render(&e));
        }
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(errors(&validator, &doc), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn every_example_pipeline_validates_against_the_pipeline_schema() {
    let validator = jsonschema::validator_for(&pipeline_schema()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            errors(&validator, &doc),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn the_dag_schema_accepts_what_the_parser_accepts_and_refuses_what_it_refuses() {
    let validator = jsonschema::validator_for(&dag_schema()).unwrap();
    let good = r#"{"dag_id": "d-1", "priority": "low", "tasks": [
        {"id": "a", "run": "make", "resources": {"cpu": "500m", "memory": "1Gi"}},
        {"id": "b", "run": "make", "needs": "a", "retry": 2,
         "resources": {"cpu": 2, "memory": 1048576}},
        {"id": "c", "run": "make", "needs": ["a", "b"], "retry": {"limit": 1, "delay": "1s", "max_delay": "4s"}}]}"#;
    cascade_spec::parse_dag("good.json", good).unwrap();
    let doc: serde_json::Value = serde_json::from_str(good).unwrap();
    assert_eq!(errors(&validator, &doc), Vec::<String>::new());
    let bad = [
        r#"{"tasks": []}"#,
        r#"{"tasks": [{"id": "a"}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x", "rn": "y"}]}"#,
        r#"{"tasks": [{"id": "1a", "run": "x"}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x", "retry": {"limit": 1, "backoff": "1s"}}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x", "resources": {"cpus": 2}}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x", "resources": {"cpu": -1}}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x", "resources": {"memory": "1GB"}}]}"#,
        r#"{"tasks": [{"id": "a", "run": "x"}], "priority": "urgent"}"#,
        r#"{"tasks": [{"id": "a", "run": "x"}], "on": "push"}"#,
    ];
    for text in bad {
        assert!(
            cascade_spec::parse_dag("bad.json", text).is_err(),
            "the parser refuses {text}"
        );
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(
            !errors(&validator, &doc).is_empty(),
            "the schema refuses {text}"
        );
    }
}
