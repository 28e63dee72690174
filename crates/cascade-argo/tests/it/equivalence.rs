//! One plan, two backends: for every example the local engine's plan and the rendered
//! Workflow agree on jobs, edges, conditions, retries and fan-out sources.

use crate::root;
use cascade_argo::render::sanitize;
use cascade_argo::{Manifest, RenderOptions, render};
use cascade_plan::{FanOut, Trigger};

fn workflow_spec(m: &Manifest) -> serde_json::Value {
    match m {
        Manifest::Workflow(w) => serde_json::to_value(&w.spec).unwrap(),
        Manifest::CronWorkflow(c) => serde_json::to_value(&c.spec.workflow_spec).unwrap(),
    }
}

#[test]
fn plan_and_workflow_agree_for_every_example() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(root().join("crates/cascade-argo/tests/fixtures/rules.yaml"));
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let pipeline = cascade_spec::parse_pipeline("x", &text).unwrap();
        let plan = cascade_plan::plan(&pipeline, &Trigger::manual(), &[]).unwrap();
        let spec = workflow_spec(
            &render(
                &pipeline,
                &plan,
                &crate::config(),
                &RenderOptions::default(),
            )
            .unwrap(),
        );
        let file = path.display();
        let tasks = spec["templates"][0]["dag"]["tasks"].as_array().unwrap();
        // Jobs: one task per planned job, same order.
        let names: Vec<String> = tasks
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = plan.jobs.iter().map(|j| sanitize(j.id.as_str())).collect();
        assert_eq!(names, expected, "{file}: jobs");
        for (job, task) in plan.jobs.iter().zip(tasks) {
            let depends = task["depends"].as_str().unwrap_or_default();
            let words: Vec<&str> = depends
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
                .filter(|w| !w.is_empty())
                .collect();
            // Edges: every need is in `depends`, and nothing else is.
            let mut mentioned: Vec<&str> =
                words.iter().filter_map(|w| w.split('.').next()).collect();
            mentioned.sort_unstable();
            mentioned.dedup();
            let mut needs: Vec<String> = job
                .needs
                .iter()
                .map(|&n| sanitize(plan.jobs[n].id.as_str()))
                .collect();
            needs.sort();
            assert_eq!(mentioned, needs, "{file}: edges of {}", job.id);
            // Conditions: the default waits for every need to succeed.
            if job.condition.is_none() && !needs.is_empty() {
                let all: Vec<String> = job
                    .needs
                    .iter()
                    .map(|&n| format!("{}.Succeeded", sanitize(plan.jobs[n].id.as_str())))
                    .collect();
                assert_eq!(
                    depends,
                    all.join(" && "),
                    "{file}: default condition of {}",
                    job.id
                );
            }
            // always(): every need, in any final state.
            if job
                .condition
                .as_ref()
                .is_some_and(|c| c.to_string() == "always()")
            {
                for n in &needs {
                    assert!(
                        depends.contains(&format!("{n}.Failed"))
                            && depends.contains(&format!("{n}.Skipped")),
                        "{file}: always() of {}",
                        job.id
                    );
                }
            }
            // Retries.
            let template = spec["templates"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == task["template"])
                .unwrap();
            match &job.retry {
                None => assert!(
                    template.get("retryStrategy").is_none(),
                    "{file}: {}",
                    job.id
                ),
                Some(r) => {
                    assert_eq!(
                        template["retryStrategy"]["limit"],
                        i64::from(r.limit),
                        "{file}: retries of {}",
                        job.id
                    );
                    assert_eq!(
                        template["retryStrategy"]["backoff"]["duration"],
                        cascade_spec::duration::format(r.backoff)
                    );
                }
            }
            // Fan-out sources.
            match &job.fan_out {
                FanOut::Single => assert!(
                    task.get("withItems").is_none() && task.get("withParam").is_none(),
                    "{file}: {}",
                    job.id
                ),
                FanOut::Matrix(combos) => assert_eq!(
                    task["withItems"].as_array().unwrap().len(),
                    combos.len(),
                    "{file}: matrix of {}",
                    job.id
                ),
                FanOut::Items(items) => {
                    assert_eq!(task["withItems"].as_array().unwrap().len(), items.len());
                }
                FanOut::Dynamic(e) => {
                    let r = e.references()[0];
                    let source = format!(
                        "{{{{tasks.{}.outputs.parameters.{}}}}}",
                        sanitize(r.job().unwrap()),
                        r.output_name().unwrap()
                    );
                    assert_eq!(
                        task["withParam"],
                        source.as_str(),
                        "{file}: fan-out source of {}",
                        job.id
                    );
                }
            }
        }
    }
}
