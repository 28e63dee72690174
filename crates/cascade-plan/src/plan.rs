//! Pipeline + trigger → [`Plan`]: jobs in dependency order with their scripts rewritten,
//! fan-outs known so far expanded, job selection and path filters applied. One plan feeds
//! every backend (the local engine, Argo).

use crate::error::PlanError;
use crate::script::{self, Script};
use crate::trigger::{Trigger, resolve_inputs};
use cascade_spec::expr::{Expr, Template};
use cascade_spec::model::{ForEach, Job, OutputSource, Resources, Retry, Shell};
use cascade_spec::{JobId, Pipeline};
use indexmap::IndexMap;
use std::time::Duration;

/// Everything needed to run a pipeline once.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub name: String,
    pub event_name: String,
    pub payload: serde_json::Value,
    /// Inputs after defaults, typed.
    pub inputs: IndexMap<String, serde_json::Value>,
    /// Jobs in a topological order (every job after its needs).
    pub jobs: Vec<PlannedJob>,
}

/// How many copies of a job run, and with which values.
#[derive(Debug, Clone, PartialEq)]
pub enum FanOut {
    /// One copy.
    Single,
    /// One copy per matrix combination (`matrix.<axis>`), in file order.
    Matrix(Vec<IndexMap<String, String>>),
    /// One copy per item of a list known at plan time (`item`).
    Items(Vec<serde_json::Value>),
    /// One copy per item of a list computed when the job's needs are done.
    Dynamic(Expr),
}

/// A job as it will run.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedJob {
    pub id: JobId,
    pub name: Option<String>,
    /// Indexes into [`Plan::jobs`] of the jobs this one waits for.
    pub needs: Vec<usize>,
    /// `None` means the default, `success()`.
    pub condition: Option<Expr>,
    pub script: Script,
    pub shell: Shell,
    /// Pipeline env then job env (the job's wins), values still templates.
    pub env: Vec<(String, Template)>,
    pub secrets: Vec<String>,
    pub fan_out: FanOut,
    pub outputs: IndexMap<String, OutputSource>,
    pub retry: Option<Retry>,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    pub runner: Option<String>,
    /// The job's own `resources:`, not yet merged with its runner alias (the admin
    /// config's [`job_resources`](cascade_spec::config::AdminConfig::job_resources) does
    /// that where the config is known).
    pub resources: Option<Resources>,
    pub image: Option<String>,
    /// Set when the job is known to be skipped before the run starts.
    pub skip: Option<String>,
}

/// Makes a plan. `select` limits the run to these jobs and everything they need.
pub fn plan(pipeline: &Pipeline, trigger: &Trigger, select: &[String]) -> Result<Plan, PlanError> {
    let inputs = resolve_inputs(pipeline, &trigger.inputs)?;
    let wanted = selection(pipeline, select)?;
    let order = topological(pipeline);
    let mut index_of: IndexMap<&JobId, usize> = IndexMap::new();
    let mut jobs = Vec::new();
    for job_index in order {
        let Some((id, job)) = pipeline.jobs.get_index(job_index) else {
            continue;
        };
        if !wanted[job_index] {
            continue;
        }
        let needs = job
            .needs
            .iter()
            .filter_map(|n| index_of.get(&n.value).copied())
            .collect();
        index_of.insert(id, jobs.len());
        jobs.push(planned(pipeline, job, needs, trigger)?);
    }
    Ok(Plan {
        name: pipeline
            .name
            .clone()
            .unwrap_or_else(|| "pipeline".to_owned()),
        event_name: trigger.event_name.clone(),
        payload: trigger.payload.clone(),
        inputs,
        jobs,
    })
}

fn planned(
    pipeline: &Pipeline,
    job: &Job,
    needs: Vec<usize>,
    trigger: &Trigger,
) -> Result<PlannedJob, PlanError> {
    let mut env: IndexMap<String, Template> = pipeline
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.template.clone()))
        .collect();
    for (k, v) in &job.env {
        env.insert(k.clone(), v.template.clone());
    }
    let fan_out = match (&job.for_each, job.matrix.is_empty()) {
        (Some(ForEach::Static(items)), _) => FanOut::Items(
            items
                .iter()
                .cloned()
                .map(serde_json::Value::String)
                .collect(),
        ),
        (Some(ForEach::Dynamic { expr, .. }), _) => FanOut::Dynamic(expr.clone()),
        (None, false) => FanOut::Matrix(combinations(&job.matrix)),
        (None, true) => FanOut::Single,
    };
    let skip = path_filter(job, trigger)?;
    Ok(PlannedJob {
        id: job.id.clone(),
        name: job.name.clone(),
        needs,
        condition: job.condition.as_ref().map(|c| c.expr.clone()),
        script: script::rewrite(&job.run.template, job.shell).map_err(|source| {
            PlanError::UnsafeScript {
                job: job.id.to_string(),
                source,
            }
        })?,
        shell: job.shell,
        env: env.into_iter().collect(),
        secrets: job.secrets.iter().map(|s| s.value.clone()).collect(),
        fan_out,
        outputs: job.outputs.clone(),
        retry: job.retry.clone(),
        timeout: job.timeout,
        continue_on_error: job.continue_on_error,
        runner: job.runner.as_ref().map(|r| r.value.clone()),
        resources: job.resources.clone(),
        image: job.image.clone(),
        skip,
    })
}

/// The skip reason when a job's `paths:` match none of the changed files.
fn path_filter(job: &Job, trigger: &Trigger) -> Result<Option<String>, PlanError> {
    let (false, Some(changed)) = (job.paths.is_empty(), &trigger.changed_paths) else {
        return Ok(None);
    };
    let mut builder = globset::GlobSetBuilder::new();
    for glob in &job.paths {
        let g = globset::GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| PlanError::BadGlob {
                job: job.id.to_string(),
                glob: glob.clone(),
                reason: e.kind().to_string(),
            })?;
        builder.add(g);
    }
    let set = builder.build().map_err(|e| PlanError::BadGlob {
        job: job.id.to_string(),
        glob: job.paths.join(", "),
        reason: e.to_string(),
    })?;
    Ok((!changed.iter().any(|p| set.is_match(p)))
        .then(|| format!("no changed file matches paths: {}", job.paths.join(", "))))
}

/// Matrix combinations, first axis outermost, in file order.
pub fn combinations(matrix: &IndexMap<String, Vec<String>>) -> Vec<IndexMap<String, String>> {
    let mut out = vec![IndexMap::new()];
    for (axis, values) in matrix {
        out = out
            .into_iter()
            .flat_map(|combo| {
                values.iter().map(move |v| {
                    let mut c = combo.clone();
                    c.insert(axis.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    out
}

/// Indexes of the selected jobs and everything they need (all jobs when `select` is empty).
/// Whether each job (by index) is part of the run. A flag per job, not a list searched
/// per job: pipelines of 20,000 jobs are planned in linear time.
fn selection(pipeline: &Pipeline, select: &[String]) -> Result<Vec<bool>, PlanError> {
    if select.is_empty() {
        return Ok(vec![true; pipeline.jobs.len()]);
    }
    let mut wanted = vec![false; pipeline.jobs.len()];
    let mut stack = Vec::new();
    for name in select {
        let Some(index) = pipeline.jobs.get_index_of(name.as_str()) else {
            return Err(PlanError::UnknownJob {
                name: name.clone(),
                known: pipeline
                    .jobs
                    .keys()
                    .map(JobId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        stack.push(index);
    }
    while let Some(index) = stack.pop() {
        if wanted[index] {
            continue;
        }
        wanted[index] = true;
        if let Some((_, job)) = pipeline.jobs.get_index(index) {
            stack.extend(
                job.needs
                    .iter()
                    .filter_map(|n| pipeline.jobs.get_index_of(n.value.as_str())),
            );
        }
    }
    Ok(wanted)
}

/// Kahn's algorithm, ties broken by file order (the spec guarantees a DAG).
fn topological(pipeline: &Pipeline) -> Vec<usize> {
    let n = pipeline.jobs.len();
    let mut indegree = vec![0usize; n];
    let mut dependents = vec![Vec::new(); n];
    for (i, job) in pipeline.jobs.values().enumerate() {
        for need in &job.needs {
            if let Some(d) = pipeline.jobs.get_index_of(need.value.as_str()) {
                indegree[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        cascade_spec::parse_pipeline("t.yaml", text).unwrap()
    }

    #[test]
    fn jobs_come_after_their_needs() {
        let p = pipeline(
            "jobs:\n  c: { needs: [b], run: c }\n  b: { needs: [a], run: b }\n  a: { run: a }\n",
        );
        let plan = plan(&p, &Trigger::manual(), &[]).unwrap();
        let ids: Vec<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(plan.jobs[2].needs, [1]);
    }

    #[test]
    fn selection_keeps_what_the_selected_job_needs() {
        let p = pipeline("jobs:\n  a: { run: a }\n  b: { needs: [a], run: b }\n  c: { run: c }\n");
        let plan = plan(&p, &Trigger::manual(), &["b".to_owned()]).unwrap();
        let ids: Vec<&str> = plan.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let err = super::plan(&p, &Trigger::manual(), &["x".to_owned()]).unwrap_err();
        assert_eq!(err.to_string(), "unknown job `x` (jobs: a, b, c)");
    }

    #[test]
    fn matrix_expands_in_file_order() {
        let m: IndexMap<String, Vec<String>> = [
            ("os".to_owned(), vec!["l".to_owned(), "m".to_owned()]),
            ("py".to_owned(), vec!["1".to_owned(), "2".to_owned()]),
        ]
        .into_iter()
        .collect();
        let c = combinations(&m);
        let text: Vec<String> = c
            .iter()
            .map(|c| format!("{}{}", c["os"], c["py"]))
            .collect();
        assert_eq!(text, ["l1", "l2", "m1", "m2"]);
    }

    #[test]
    fn path_filters_skip_jobs_without_matching_changes() {
        let p = pipeline(
            "jobs:\n  docs: { run: a, paths: ['docs/**'] }\n  src: { run: b, paths: ['src/**'] }\n",
        );
        let trigger = Trigger {
            changed_paths: Some(vec!["docs/index.md".to_owned()]),
            ..Trigger::manual()
        };
        let plan = plan(&p, &trigger, &[]).unwrap();
        assert_eq!(plan.jobs[0].skip, None);
        assert_eq!(
            plan.jobs[1].skip.as_deref(),
            Some("no changed file matches paths: src/**")
        );
        // Unknown changes: nothing is skipped.
        let plan = super::plan(&p, &Trigger::manual(), &[]).unwrap();
        assert!(plan.jobs.iter().all(|j| j.skip.is_none()));
    }

    #[test]
    fn inputs_are_checked_and_defaulted() {
        let p = pipeline(
            "on:\n  workflow_dispatch:\n    inputs:\n      who: { default: world }\n      n: { type: number, required: true }\njobs:\n  a: { run: 'echo ${{ inputs.who }}' }\n",
        );
        let mut t = Trigger::manual();
        assert_eq!(
            super::plan(&p, &t, &[]).unwrap_err().to_string(),
            "input `n` is required and has no default"
        );
        t.inputs.insert("n".into(), "x".into());
        assert_eq!(
            super::plan(&p, &t, &[]).unwrap_err().to_string(),
            "input `n`: expected a number, found `x`"
        );
        t.inputs.insert("n".into(), "3".into());
        let plan = super::plan(&p, &t, &[]).unwrap();
        assert_eq!(plan.inputs["who"], "world");
        assert_eq!(plan.inputs["n"], 3.0);
        t.inputs.insert("nope".into(), "1".into());
        assert_eq!(
            super::plan(&p, &t, &[]).unwrap_err().to_string(),
            "unknown input `nope` (declared inputs: who, n)"
        );
    }
}
