//! Every example renders, validates against the CRD schema, and is a snapshot.

use crate::{assert_valid, render_file, root, yaml};
use cascade_argo::{ArgoVersion, Manifest, RenderOptions};
use cascade_plan::Trigger;

#[test]
fn every_example_renders_to_a_valid_manifest() {
    let mut files: Vec<_> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for path in files {
        let manifest = render_file(&path, &Trigger::manual(), &RenderOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_valid(&manifest);
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("example_{name}"), yaml(&manifest));
    }
}

#[test]
fn scheduled_pipelines_become_cron_workflows() {
    let path = root().join("examples/release.yaml");
    let Manifest::CronWorkflow(cron) =
        render_file(&path, &Trigger::manual(), &RenderOptions::default()).unwrap()
    else {
        panic!("release.yaml has on.schedule");
    };
    assert_eq!(cron.spec.schedules, ["30 2 * * *", "@weekly"]);
    assert_eq!(cron.spec.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(cron.spec.schedule, None);
    let legacy = RenderOptions {
        argo_version: ArgoVersion::Legacy35,
        ..RenderOptions::default()
    };
    let Manifest::CronWorkflow(old) = render_file(&path, &Trigger::manual(), &legacy).unwrap()
    else {
        panic!()
    };
    assert_eq!(old.spec.schedule.as_deref(), Some("30 2 * * *"));
    assert!(old.spec.schedules.is_empty());
    // The same pipeline for a push is a plain Workflow.
    let push = Trigger {
        event_name: "push".into(),
        ..Trigger::manual()
    };
    assert!(matches!(
        render_file(&path, &push, &RenderOptions::default()).unwrap(),
        Manifest::Workflow(_)
    ));
}
