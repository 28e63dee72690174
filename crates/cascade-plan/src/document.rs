//! The planned model as a stable JSON document (`cascade plan FILE --output json`).
//!
//! This is a contract: the Python SDK and the equivalence tests compare the DAG they lower
//! against it, so two files that mean the same pipeline give byte-identical documents.
//! Hence the rules every field below follows:
//!
//! - `version` is 1. A field may be added in version 1; a field that changes meaning or
//!   goes away bumps the version.
//! - Every field is always present: an unset value is `null`, an empty list `[]`, an empty
//!   map `{}`.
//! - Order is canonical: jobs are sorted by id, maps by key, and lists whose order means
//!   nothing (`needs`, `secrets`, branch filters, …) are sorted. Lists whose order is the
//!   meaning stay in file order: matrix axes and their values, `for_each` items, the
//!   options of a `choice` input.
//! - Expressions are written in one canonical spelling (`needs.a.result == 'success'`),
//!   whatever spacing or `${{ }}` the file used; a job without `if:` gets `success()`.
//! - Durations are whole milliseconds. Nothing depends on the machine, the time or the
//!   path of the file.
//!
//! [`schema`] is the JSON Schema of the document (`crates/cascade-plan/plan.schema.json`,
//! kept in step by a test).

use crate::plan::{FanOut, Plan, PlannedJob};
use cascade_spec::Pipeline;
use cascade_spec::dag::Dag;
use cascade_spec::expr::{Segment, Template};
use cascade_spec::model::{InputKind, Job, Shell, Triggers};
use serde::Serialize;
use std::collections::BTreeMap;

/// The version this module writes.
pub const VERSION: u32 = 1;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PlanDocument {
    /// The document format: always 1 (see the module docs for what may change within it).
    pub version: u32,
    /// The pipeline's `name:`; for a DAG JSON its `dag_id`, else the file name without
    /// its extension; `pipeline` when none of these exists.
    pub name: String,
    /// What the plan was made for: the event and the inputs after defaults.
    pub trigger: TriggerDoc,
    /// The DAG JSON submission fields (`scope`, `priority`, `target_node`); `null` for a
    /// ci.yaml.
    pub dag: Option<DagDoc>,
    /// `on:` — the events that start the pipeline (all empty: it runs only when asked).
    pub on: OnDoc,
    /// Every job of the plan, sorted by id.
    pub jobs: Vec<JobDoc>,
}

/// The trigger the plan was made for.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TriggerDoc {
    /// `manual` (the command line), `push`, `pull_request`, `schedule`,
    /// `workflow_dispatch` or `repository_dispatch`.
    pub event: String,
    /// Every declared input with its value after defaults (`--input NAME=VALUE` wins),
    /// typed: strings, booleans, numbers.
    pub inputs: BTreeMap<String, serde_json::Value>,
}

/// The submission fields of a DAG JSON.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DagDoc {
    /// `dag_id`, when given.
    pub dag_id: Option<String>,
    /// The queue scope (`project:web`, `global`); `null` means the server's default.
    pub scope: Option<String>,
    /// `low`, `normal` or `high`.
    pub priority: String,
    /// The worker node the DAG must run on, when given.
    pub target_node: Option<String>,
}

/// `on:`, each trigger `null` when the file does not name it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct OnDoc {
    /// `on.push`.
    pub push: Option<PushDoc>,
    /// `on.pull_request`.
    pub pull_request: Option<PullRequestDoc>,
    /// `on.schedule`, sorted by cron line then time zone.
    pub schedule: Vec<ScheduleDoc>,
    /// `on.workflow_dispatch`.
    pub workflow_dispatch: Option<WorkflowDispatchDoc>,
    /// `on.repository_dispatch`.
    pub repository_dispatch: Option<RepositoryDispatchDoc>,
}

/// Glob filters of `on.push`, each list sorted; an empty list filters nothing.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PushDoc {
    /// Branches that count (`branches:`).
    pub branches: Vec<String>,
    /// Branches that do not (`branches-ignore:`).
    pub branches_ignore: Vec<String>,
    /// Tags that count.
    pub tags: Vec<String>,
    /// Tags that do not.
    pub tags_ignore: Vec<String>,
    /// Changed paths of which at least one must match.
    pub paths: Vec<String>,
    /// Changed paths that do not count.
    pub paths_ignore: Vec<String>,
}

/// Filters of `on.pull_request`, each list sorted.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PullRequestDoc {
    /// Base branches that count.
    pub branches: Vec<String>,
    /// Base branches that do not.
    pub branches_ignore: Vec<String>,
    /// Changed paths of which at least one must match.
    pub paths: Vec<String>,
    /// Changed paths that do not count.
    pub paths_ignore: Vec<String>,
    /// The pull request actions that start the pipeline; an empty file list is written
    /// as the default, `opened`, `reopened`, `synchronize`.
    pub types: Vec<String>,
}

/// One `on.schedule` entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
pub struct ScheduleDoc {
    /// The five-field cron line as written.
    pub cron: String,
    /// The IANA time zone; `UTC` when the file gives none.
    pub timezone: String,
}

/// `on.workflow_dispatch`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkflowDispatchDoc {
    /// Declared inputs by name.
    pub inputs: BTreeMap<String, InputDoc>,
}

/// One declared input.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct InputDoc {
    /// `string`, `boolean`, `number` or `choice`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The default as written, `null` when there is none.
    pub default: Option<String>,
    /// Whether a run must give it (only meaningful without a default).
    pub required: bool,
    /// The description, `null` when there is none.
    pub description: Option<String>,
    /// The allowed values of a `choice` input, in file order (the order a form shows).
    pub options: Vec<String>,
}

/// `on.repository_dispatch`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RepositoryDispatchDoc {
    /// The event types that start the pipeline, sorted; empty means any.
    pub types: Vec<String>,
}

/// One job as it will run.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JobDoc {
    /// The job id (its key under `jobs:`, or a DAG task's `id`).
    pub id: String,
    /// The display name (`name:`), `null` when unset.
    pub name: Option<String>,
    /// Ids of the jobs this one waits for (the DAG's edges), sorted.
    pub needs: Vec<String>,
    /// The `if:` condition in canonical spelling; `success()` when the file has none.
    #[serde(rename = "if")]
    pub condition: String,
    /// `sh` or `bash`.
    pub shell: String,
    /// The script handed to the shell, and the expressions it reads from the environment.
    pub run: RunDoc,
    /// The job's environment: the pipeline's `env:` then the job's (the job's wins), by
    /// name; values are templates in canonical spelling (`${{ inputs.who }}`), computed
    /// when the job starts.
    pub env: BTreeMap<String, String>,
    /// The secret names the job declares (`secrets:`), sorted; only these reach it.
    pub secrets: Vec<String>,
    /// How many copies run.
    pub fan_out: FanOutDoc,
    /// Declared outputs by name: `file` (`$CASCADE_OUTPUT`), `stdout` or `stdout-json`.
    pub outputs: BTreeMap<String, String>,
    /// `retry:`, `null` when a failure is final.
    pub retry: Option<RetryDoc>,
    /// `timeout:` in milliseconds, `null` for none.
    pub timeout_ms: Option<u64>,
    /// Whether the run may succeed although this job failed.
    pub continue_on_error: bool,
    /// The runner alias (`runner:`), resolved by the admin config; `null` when unset.
    pub runner: Option<String>,
    /// The job's own `resources:`, each field overriding the runner alias's; `null` when
    /// the job sets neither.
    pub resources: Option<ResourcesDoc>,
    /// The container image (`image:`), `null` when unset.
    pub image: Option<String>,
    /// Job-level path filter (`paths:`), sorted: the job is skipped when a known change
    /// touches none of them. Empty: never skipped for that reason.
    pub paths: Vec<String>,
}

/// `resources:` of a job, in canonical units.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ResourcesDoc {
    /// CPU in millicores (`cpu: 2` is 2000, `cpu: 500m` is 500); `null`: the runner
    /// alias's, or none.
    pub cpu_milli: Option<u32>,
    /// Memory in bytes (`memory: 1Gi` is 1073741824); `null`: the runner alias's, or none.
    pub memory_bytes: Option<u64>,
}

/// A job's script after expressions were taken out of the shell text.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RunDoc {
    /// The script text; every `${{ }}` of the file is a quoted `${CASCADE_EXPR_<n>}`.
    pub script: String,
    /// The variables the script reads, in order of `<n>`.
    pub bindings: Vec<BindingDoc>,
}

/// One expression of a script.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BindingDoc {
    /// The environment variable (`CASCADE_EXPR_1`).
    pub var: String,
    /// The expression whose value it carries, in canonical spelling.
    pub expr: String,
}

/// How many copies of a job run.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FanOutDoc {
    /// One copy.
    Single,
    /// One copy per combination of `matrix:` values.
    Matrix {
        /// The axes in file order, each with its values in file order.
        axes: Vec<AxisDoc>,
        /// Every combination (axis name → value), first axis outermost; a copy's
        /// position here is its index.
        combinations: Vec<BTreeMap<String, String>>,
    },
    /// One copy per item of a list written in the file (`for_each: [..]`), in file order.
    Items {
        /// The items (`item` in expressions).
        items: Vec<serde_json::Value>,
    },
    /// One copy per item of a list computed when the job's needs are done
    /// (`for_each: ${{ … }}`, Argo `withParam`).
    Dynamic {
        /// The expression giving the list, in canonical spelling.
        expr: String,
    },
}

/// One matrix axis.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AxisDoc {
    /// The axis name (`matrix.<name>`).
    pub name: String,
    /// Its values, in file order.
    pub values: Vec<String>,
}

/// `retry:` of a job.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RetryDoc {
    /// Attempts after the first one.
    pub limit: u32,
    /// Delay before the first retry in milliseconds; it doubles each time.
    pub backoff_ms: u64,
    /// The longest delay in milliseconds, `null` for no cap.
    pub max_backoff_ms: Option<u64>,
    /// Retry only on these exit codes (sorted); empty means on any failure.
    pub on_exit_codes: Vec<i32>,
}

/// The document of a plan of `pipeline`; `dag` is the DAG JSON it came from, if any.
pub fn document(pipeline: &Pipeline, plan: &Plan, dag: Option<&Dag>) -> PlanDocument {
    let mut jobs: Vec<JobDoc> = plan
        .jobs
        .iter()
        .map(|job| job_doc(pipeline, plan, job))
        .collect();
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    PlanDocument {
        version: VERSION,
        name: plan.name.clone(),
        trigger: TriggerDoc {
            event: plan.event_name.clone(),
            inputs: plan
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        },
        dag: dag.map(|d| DagDoc {
            dag_id: d.dag_id.clone(),
            scope: d.scope.as_ref().map(ToString::to_string),
            priority: d.priority.as_str().to_owned(),
            target_node: d.target_node.clone(),
        }),
        on: on(&pipeline.on),
        jobs,
    }
}

fn job_doc(pipeline: &Pipeline, plan: &Plan, job: &PlannedJob) -> JobDoc {
    let spec = pipeline.jobs.get(job.id.as_str());
    JobDoc {
        id: job.id.to_string(),
        name: job.name.clone(),
        needs: sorted(
            job.needs
                .iter()
                .filter_map(|&i| plan.jobs.get(i).map(|n| n.id.to_string())),
        ),
        condition: job
            .condition
            .as_ref()
            .map_or_else(|| "success()".to_owned(), ToString::to_string),
        shell: match job.shell {
            Shell::Sh => "sh",
            Shell::Bash => "bash",
        }
        .to_owned(),
        run: RunDoc {
            script: job.script.text.clone(),
            bindings: job
                .script
                .bindings
                .iter()
                .map(|b| BindingDoc {
                    var: b.var.clone(),
                    expr: b.expr.to_string(),
                })
                .collect(),
        },
        env: job
            .env
            .iter()
            .map(|(k, v)| (k.clone(), template_text(v)))
            .collect(),
        secrets: sorted(job.secrets.iter().cloned()),
        fan_out: fan_out_doc(&job.fan_out, spec),
        outputs: job
            .outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.name().to_owned()))
            .collect(),
        retry: job.retry.as_ref().map(|r| RetryDoc {
            limit: r.limit,
            backoff_ms: millis(r.backoff),
            max_backoff_ms: r.max_backoff.map(millis),
            on_exit_codes: {
                let mut codes = r.on_exit_codes.clone();
                codes.sort_unstable();
                codes
            },
        }),
        timeout_ms: job.timeout.map(millis),
        continue_on_error: job.continue_on_error,
        runner: job.runner.clone(),
        resources: job.resources.as_ref().map(|r| ResourcesDoc {
            cpu_milli: r.cpu_milli,
            memory_bytes: r
                .memory
                .as_deref()
                .and_then(cascade_spec::config::memory_bytes),
        }),
        image: job.image.clone(),
        paths: sorted(spec.map(|s| s.paths.clone()).unwrap_or_default()),
    }
}

fn fan_out_doc(fan_out: &FanOut, spec: Option<&Job>) -> FanOutDoc {
    match fan_out {
        FanOut::Single => FanOutDoc::Single,
        FanOut::Matrix(combinations) => FanOutDoc::Matrix {
            axes: spec
                .map(|s| {
                    s.matrix
                        .iter()
                        .map(|(name, values)| AxisDoc {
                            name: name.clone(),
                            values: values.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            combinations: combinations
                .iter()
                .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .collect(),
        },
        FanOut::Items(items) => FanOutDoc::Items {
            items: items.clone(),
        },
        FanOut::Dynamic(expr) => FanOutDoc::Dynamic {
            expr: expr.to_string(),
        },
    }
}

fn on(triggers: &Triggers) -> OnDoc {
    let mut schedule: Vec<ScheduleDoc> = triggers
        .schedule
        .iter()
        .map(|s| ScheduleDoc {
            cron: s.cron.clone(),
            timezone: s.timezone.clone().unwrap_or_else(|| "UTC".to_owned()),
        })
        .collect();
    schedule.sort();
    OnDoc {
        push: triggers.push.as_ref().map(|p| PushDoc {
            branches: sorted(p.branches.clone()),
            branches_ignore: sorted(p.branches_ignore.clone()),
            tags: sorted(p.tags.clone()),
            tags_ignore: sorted(p.tags_ignore.clone()),
            paths: sorted(p.paths.clone()),
            paths_ignore: sorted(p.paths_ignore.clone()),
        }),
        pull_request: triggers.pull_request.as_ref().map(|p| PullRequestDoc {
            branches: sorted(p.branches.clone()),
            branches_ignore: sorted(p.branches_ignore.clone()),
            paths: sorted(p.paths.clone()),
            paths_ignore: sorted(p.paths_ignore.clone()),
            types: if p.types.is_empty() {
                ["opened", "reopened", "synchronize"]
                    .map(str::to_owned)
                    .to_vec()
            } else {
                sorted(p.types.clone())
            },
        }),
        schedule,
        workflow_dispatch: triggers
            .workflow_dispatch
            .as_ref()
            .map(|w| WorkflowDispatchDoc {
                inputs: w
                    .inputs
                    .iter()
                    .map(|(name, input)| {
                        (
                            name.clone(),
                            InputDoc {
                                kind: match input.kind {
                                    InputKind::String => "string",
                                    InputKind::Boolean => "boolean",
                                    InputKind::Number => "number",
                                    InputKind::Choice => "choice",
                                }
                                .to_owned(),
                                default: input.default.clone(),
                                required: input.required,
                                description: input.description.clone(),
                                options: input.options.clone(),
                            },
                        )
                    })
                    .collect(),
            }),
        repository_dispatch: triggers
            .repository_dispatch
            .as_ref()
            .map(|r| RepositoryDispatchDoc {
                types: sorted(r.types.clone()),
            }),
    }
}

/// A template in canonical spelling: its text with each expression as `${{ expr }}`.
pub fn template_text(template: &Template) -> String {
    template
        .segments
        .iter()
        .map(|s| match s {
            Segment::Text(t) => t.clone(),
            Segment::Expr { expr, .. } => format!("${{{{ {expr} }}}}"),
        })
        .collect()
}

fn sorted(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The JSON Schema of [`PlanDocument`], strict as the contract is: every field of every
/// object is required (an unset one is `null`) and no other field may appear.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(PlanDocument)).unwrap_or_default();
    strict(&mut schema);
    schema
}

/// Marks every object with `properties` (at any depth) closed and fully required.
fn strict(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(properties)) = map.get("properties") {
                let names: Vec<serde_json::Value> = properties
                    .keys()
                    .map(|k| serde_json::Value::String(k.clone()))
                    .collect();
                map.insert("required".to_owned(), serde_json::Value::Array(names));
                map.insert(
                    "additionalProperties".to_owned(),
                    serde_json::Value::Bool(false),
                );
            }
            map.values_mut().for_each(strict);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;

    fn doc(text: &str) -> serde_json::Value {
        let pipeline = cascade_spec::parse_pipeline("t.yaml", text).unwrap();
        let plan = crate::plan(&pipeline, &Trigger::manual(), &[]).unwrap();
        serde_json::to_value(document(&pipeline, &plan, None)).unwrap()
    }

    #[test]
    fn the_same_pipeline_spelled_differently_gives_the_same_document() {
        let a = doc(
            "name: p\non:\n  push: { branches: [main, dev] }\n  workflow_dispatch: { inputs: { x: { default: '1' } } }\njobs:\n  b: { needs: [a, c], run: 'echo ${{inputs.x}}', if: \"needs.a.result=='success'\", secrets: [Z, A] }\n  a: { run: x }\n  c: { run: y, timeout: 60s }\n",
        );
        let b = doc(
            "name: p\non:\n  workflow_dispatch:\n    inputs: { x: { default: '1' } }\n  push: { branches: [dev, main] }\njobs:\n  c: { run: y, timeout: 1m }\n  a: { run: x }\n  b: { needs: [c, a], run: 'echo ${{ inputs.x }}', if: \"${{ needs.a.result == 'success' }}\", secrets: [A, Z] }\n",
        );
        assert_eq!(a, b);
        assert_eq!(a["jobs"][1]["if"], "needs.a.result == 'success'");
        assert_eq!(a["jobs"][1]["needs"], serde_json::json!(["a", "c"]));
        assert_eq!(a["jobs"][0]["if"], "success()");
        assert_eq!(a["jobs"][2]["timeout_ms"], 60_000);
    }

    #[test]
    fn resources_are_in_canonical_units_whatever_the_spelling() {
        let a = doc(
            "jobs:\n  both: { run: x, runner: small, resources: { cpu: 2, memory: 1Gi } }\n  cpu: { run: x, resources: { cpu: 0.5 } }\n  none: { run: x, resources: {} }\n",
        );
        let b = doc(
            "jobs:\n  both: { run: x, runner: small, resources: { cpu: '2000m', memory: 1024Mi } }\n  cpu: { run: x, resources: { cpu: 500m } }\n  none: { run: x }\n",
        );
        assert_eq!(a, b);
        let resources: Vec<(&str, &serde_json::Value)> = a["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].as_str().unwrap(), &j["resources"]))
            .collect();
        let kib = 1024_u64;
        assert_eq!(
            resources,
            [
                (
                    "both",
                    &serde_json::json!({"cpu_milli": 2000, "memory_bytes": kib * kib * kib})
                ),
                (
                    "cpu",
                    &serde_json::json!({"cpu_milli": 500, "memory_bytes": null})
                ),
                ("none", &serde_json::Value::Null),
            ]
        );
    }

    #[test]
    fn fan_outs_are_tagged_by_kind() {
        let d = doc(
            "jobs:\n  a: { run: x, outputs: { l: stdout-json } }\n  m: { run: x, matrix: { os: [l, m], py: ['1'] } }\n  s: { run: x, for_each: [p, q] }\n  d: { needs: [a], run: x, for_each: '${{ needs.a.outputs.l }}' }\n",
        );
        let kinds: Vec<&str> = d["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["fan_out"]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["single", "dynamic", "matrix", "items"]);
        assert_eq!(d["jobs"][1]["fan_out"]["expr"], "needs.a.outputs.l");
        assert_eq!(
            d["jobs"][2]["fan_out"]["combinations"],
            serde_json::json!([{"os": "l", "py": "1"}, {"os": "m", "py": "1"}])
        );
        assert_eq!(
            d["jobs"][3]["fan_out"]["items"],
            serde_json::json!(["p", "q"])
        );
    }

    /// `plan.schema.json` is what [`schema`] says; regenerate it with
    /// `CASCADE_BLESS=1 cargo test -p cascade-plan`.
    #[test]
    fn the_committed_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/plan.schema.json");
        let current = format!("{}\n", serde_json::to_string_pretty(&schema()).unwrap());
        if std::env::var_os("CASCADE_BLESS").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == current,
            "{path} is out of date; run `CASCADE_BLESS=1 cargo test -p cascade-plan` and commit it"
        );
    }

    #[test]
    fn every_field_of_the_schema_is_documented() {
        let schema = schema();
        let mut undocumented = Vec::new();
        let defs = schema["$defs"].as_object().unwrap();
        let mut objects: Vec<(&str, &serde_json::Value)> =
            defs.iter().map(|(k, v)| (k.as_str(), v)).collect();
        objects.push(("PlanDocument", &schema));
        for (name, def) in objects {
            let variants = def["oneOf"].as_array().cloned().unwrap_or_default();
            for d in std::iter::once(def.clone()).chain(variants) {
                for (field, prop) in d["properties"].as_object().into_iter().flatten() {
                    if field != "kind" && prop["description"].as_str().is_none() {
                        undocumented.push(format!("{name}.{field}"));
                    }
                }
            }
        }
        assert!(undocumented.is_empty(), "no `///` doc: {undocumented:?}");
    }
}
