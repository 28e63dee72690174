//! Plan → Argo `Workflow` (or `CronWorkflow` for scheduled pipelines). Pure: no IO.
//!
//! One DAG template `main`, one container template per job (`job-<name>`). Safety is the
//! engine's: `${{ }}` values reach a container only as env values fed from template input
//! parameters, never inside `command`/`args`; user text that contains Argo's own `{{` is
//! escaped (`{{='{{'}}`) so it stays literal. Pods run as non-root without privilege
//! escalation, under a fixed service account, with no `podSpecPatch`.
//!
//! A Python task (a job whose env has `CSPY_TASK`, as the Python SDK lowers `@cs.task`
//! calls) is a job like any other: `python3 -m cascade.runner` in the checkout, in its
//! `image` or else `[python] image`, after `[python] install` when set. Its `result` is
//! an output parameter; `toJSON(needs.X.outputs.result)` of a mapped `X` is Argo's
//! aggregate (the JSON list of each item's text), and a map that reads `toJSON(item)`
//! iterates over JSON texts (Argo gives a string item raw, which would lose its type):
//! for a list from a Python task, that task also writes the output `<name>--items`.

use crate::manifest::{
    Arguments, Artifact, Backoff, CronWorkflow, CronWorkflowSpec, DagTask, DagTemplate,
    GitArtifact, Io, Parameter, RetryStrategy, Template, ValueFrom, Workflow, WorkflowSpec,
};
use cascade_plan::{FanOut, Plan, PlannedJob};
use cascade_spec::Pipeline;
use cascade_spec::config::AdminConfig;
use cascade_spec::expr::{self, Expr, Func, Root, Segment, Template as TextTemplate};
use cascade_spec::model::{OutputSource, Shell};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PodSecurityContext, ResourceRequirements, SecretKeySelector,
    SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// Argo's CRDs cap `dag.tasks` and `templates` at this many items.
pub const MAX_TASKS: usize = 200;
/// Where a job's outputs are collected inside its container.
const OUTPUT_DIR: &str = "/tmp/cascade/outputs";
/// The env variable that makes a job a Python task (its task description).
pub const PYTHON_TASK_VAR: &str = "CSPY_TASK";
/// The suffix of the output holding a list output's items as JSON texts.
const ITEMS_SUFFIX: &str = "--items";
/// The writable `HOME` of a Python task that runs `[python] install`.
const PYTHON_HOME: &str = "/tmp/cascade/home";

/// Which Argo the manifest is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArgoVersion {
    /// 3.6 and later (4.x): `CronWorkflow.spec.schedules` is a list.
    #[default]
    Current,
    /// 3.5 and older: the singular `schedule`.
    Legacy35,
}

/// Choices that are not in the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    pub argo_version: ArgoVersion,
    /// Image of jobs without `image:`; Python tasks use `[python] image` of the admin
    /// config instead.
    pub default_image: String,
    /// The executor service account of the scope (never taken from ci.yaml).
    pub service_account: String,
    pub namespace: Option<String>,
    /// Where the completion callback is sent (`POST`, `spec.onExit`), whatever the outcome.
    pub callback_url: Option<String>,
    /// Image of the exit handler that sends it.
    pub callback_image: String,
    /// The commit every job starts in (`/src`, fetched by Argo's executor); none: jobs
    /// start in the image's working directory, and a Python task cannot be rendered.
    pub checkout: Option<Checkout>,
    /// A `Workflow` even for a scheduled pipeline: one tick, started by `serve`.
    pub one_shot: bool,
}

/// A repository and the commit to check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub repo: String,
    pub revision: String,
}

/// Where the checkout lands in a job's container (its working directory).
pub const CHECKOUT_DIR: &str = "/src";

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            argo_version: ArgoVersion::Current,
            default_image: "docker.io/library/alpine:3.20".to_owned(),
            service_account: "cascade-executor".to_owned(),
            namespace: None,
            callback_url: None,
            callback_image: "docker.io/curlimages/curl:8.10.1".to_owned(),
            checkout: None,
            one_shot: false,
        }
    }
}

/// A rendered manifest.
#[derive(Debug, Clone)]
pub enum Manifest {
    Workflow(Box<Workflow>),
    CronWorkflow(Box<CronWorkflow>),
}

impl Manifest {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Manifest::Workflow(w) => serde_json::to_value(w),
            Manifest::CronWorkflow(c) => serde_json::to_value(c),
        }
        .unwrap_or_default()
    }
}

/// Why a pipeline cannot be rendered; raised before anything is submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "job `{job}` asks for runner `{runner}`, which the admin config does not define (known runners: {known})"
    )]
    UnknownRunner {
        job: String,
        runner: String,
        known: String,
    },
    #[error(
        "job `{job}` declares secret `{secret}`, which the admin config does not map to a Kubernetes Secret (known secrets: {known})"
    )]
    UnknownSecret {
        job: String,
        secret: String,
        known: String,
    },
    #[error("jobs `{first}` and `{second}` both become Argo task `{name}`; rename one of them")]
    NameCollision {
        first: String,
        second: String,
        name: String,
    },
    #[error("job `{job}`: `{expr}` cannot run on Argo yet ({reason})")]
    Unsupported {
        job: String,
        expr: String,
        reason: String,
    },
    #[error(
        "the workflow needs {count} templates even with job templates inline; Argo allows {MAX_TASKS}"
    )]
    TooManyTemplates { count: usize },
    #[error(
        "job `{job}` is a Python task, which imports its pipeline's files from the repository, but no repository is checked out; give the repository and commit (`cascade argo render --repo URL --revision SHA`)"
    )]
    PythonWithoutCheckout { job: String },
}

/// Whether a job is a Python task (`python3 -m cascade.runner` with its `CSPY_TASK`).
pub fn is_python(job: &PlannedJob) -> bool {
    job.env.iter().any(|(var, _)| var == PYTHON_TASK_VAR)
}

/// Renders a plan. A scheduled pipeline becomes a `CronWorkflow` (when rendered for the
/// `schedule` event or for none in particular); anything else a `Workflow`.
pub fn render(
    pipeline: &Pipeline,
    plan: &Plan,
    config: &AdminConfig,
    options: &RenderOptions,
) -> Result<Manifest, RenderError> {
    let names = task_names(plan)?;
    // Parts of at most MAX_TASKS tasks, in plan (topological) order.
    let parts: Vec<usize> = (0..plan.jobs.len()).map(|i| i / MAX_TASKS).collect();
    let mut tasks: Vec<Vec<DagTask>> = vec![Vec::new(); parts.last().map_or(1, |p| p + 1)];
    let mut templates: Vec<Template> = Vec::new();
    // The templates without their names, to find jobs that can share one.
    let mut shapes: Vec<Template> = Vec::new();
    for (index, job) in plan.jobs.iter().enumerate() {
        let (mut task, template) = job_parts(plan, index, job, &names, &parts, config, options)?;
        // Jobs that differ only in name share one template (generated DAGs often repeat
        // one job), which keeps large pipelines under the 200-template limit.
        let unnamed = Template {
            name: String::new(),
            ..template
        };
        if let Some(same) = shapes.iter().position(|t| *t == unnamed) {
            task.template.clone_from(&templates[same].name);
        } else {
            templates.push(Template {
                name: task.template.clone(),
                ..unnamed.clone()
            });
            shapes.push(unnamed);
        }
        tasks[parts[index]].push(task);
    }
    if let Some(url) = &options.callback_url {
        templates.push(exit_handler(url, options));
    }
    let main = nest(tasks, &mut templates);
    templates.insert(
        0,
        Template {
            name: "main".to_owned(),
            dag: Some(main),
            ..Template::default()
        },
    );
    if templates.len() > MAX_TASKS {
        inline_jobs(&mut templates);
    }
    if templates.len() > MAX_TASKS {
        return Err(RenderError::TooManyTemplates {
            count: templates.len(),
        });
    }
    // A scheduled pipeline becomes a CronWorkflow, unless rendered for another event;
    // each of its runs is then a `schedule` event, whatever it was planned for.
    let cron = !options.one_shot
        && !pipeline.on.schedule.is_empty()
        && matches!(plan.event_name.as_str(), "schedule" | "manual");
    let event = if cron { "schedule" } else { &plan.event_name };
    let spec = workflow_spec(plan, event, templates, options);
    let generate_name = format!("{}-", sanitize(&plan.name).to_lowercase());
    let metadata = ObjectMeta {
        generate_name: Some(generate_name.clone()),
        namespace: options.namespace.clone(),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "cascade".to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    if !cron {
        let mut w = Workflow::new("", spec);
        w.metadata = metadata;
        return Ok(Manifest::Workflow(Box::new(w)));
    }
    let crons: Vec<String> = pipeline
        .on
        .schedule
        .iter()
        .map(|s| s.cron.clone())
        .collect();
    let (schedules, schedule) = match options.argo_version {
        ArgoVersion::Current => (crons, None),
        ArgoVersion::Legacy35 => (Vec::new(), crons.first().cloned()),
    };
    let cron = CronWorkflowSpec {
        schedules,
        schedule,
        timezone: pipeline
            .on
            .schedule
            .first()
            .and_then(|s| s.timezone.clone()),
        concurrency_policy: Some("Forbid".to_owned()),
        starting_deadline_seconds: None,
        workflow_spec: spec,
    };
    let mut c = CronWorkflow::new(generate_name.trim_end_matches('-'), cron);
    c.metadata.namespace.clone_from(&options.namespace);
    c.metadata.labels = metadata.labels;
    Ok(Manifest::CronWorkflow(Box::new(c)))
}

/// Moves every job template into the tasks that use it (`inline`), leaving only the DAG
/// templates (and the exit handler) in `spec.templates`.
fn inline_jobs(templates: &mut Vec<Template>) {
    let (jobs, mut rest): (Vec<Template>, Vec<Template>) = std::mem::take(templates)
        .into_iter()
        .partition(|t| t.container.is_some() && t.name.starts_with("job-"));
    let jobs: std::collections::HashMap<String, Template> = jobs
        .into_iter()
        .map(|t| {
            (
                t.name.clone(),
                Template {
                    name: String::new(),
                    ..t
                },
            )
        })
        .collect();
    for dag in rest.iter_mut().filter_map(|t| t.dag.as_mut()) {
        for task in &mut dag.tasks {
            if let Some(job) = jobs.get(&task.template) {
                task.inline = Some(Box::new(job.clone()));
                task.template.clear();
            }
        }
    }
    *templates = rest;
}

/// The entry DAG: the tasks themselves, or (beyond the 200-task limit) one nested DAG
/// template per part, each part starting when the one before succeeded.
fn nest(mut tasks: Vec<Vec<DagTask>>, templates: &mut Vec<Template>) -> DagTemplate {
    if tasks.len() == 1 {
        DagTemplate {
            tasks: tasks.pop().unwrap_or_default(),
        }
    } else {
        // Each part is a nested DAG; a part starts when the one before succeeded.
        let count = tasks.len();
        for (i, part) in tasks.into_iter().enumerate().rev() {
            templates.insert(
                0,
                Template {
                    name: format!("part-{}", i + 1),
                    dag: Some(DagTemplate { tasks: part }),
                    ..Template::default()
                },
            );
        }
        DagTemplate {
            tasks: (1..=count)
                .map(|i| DagTask {
                    name: format!("part-{i}"),
                    template: format!("part-{i}"),
                    depends: (i > 1).then(|| format!("part-{}.Succeeded", i - 1)),
                    ..DagTask::default()
                })
                .collect(),
        }
    }
}

/// The workflow spec around the templates: trigger context, service account, pod security.
fn workflow_spec(
    plan: &Plan,
    event: &str,
    templates: Vec<Template>,
    options: &RenderOptions,
) -> WorkflowSpec {
    let param = |name: &str, value: String| Parameter {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let sha = text_at(&plan.payload, &["after"])
        .or_else(|| text_at(&plan.payload, &["pull_request", "head", "sha"]))
        .unwrap_or_default();
    WorkflowSpec {
        entrypoint: "main".to_owned(),
        arguments: Arguments {
            parameters: vec![
                param("event", event.to_owned()),
                param("sha", escape(&sha)),
                param(
                    "ref",
                    escape(&text_at(&plan.payload, &["ref"]).unwrap_or_default()),
                ),
            ],
        },
        templates,
        on_exit: options
            .callback_url
            .as_ref()
            .map(|_| EXIT_HANDLER.to_owned()),
        service_account_name: Some(options.service_account.clone()),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65_532),
            ..PodSecurityContext::default()
        }),
        active_deadline_seconds: None,
        shutdown: None,
    }
}

const EXIT_HANDLER: &str = "cascade-callback";

/// The exit handler: POSTs `{workflow, status, event}` to the callback URL. Fixed script;
/// the values reach it as env (Argo's own variables and the escaped URL).
fn exit_handler(url: &str, options: &RenderOptions) -> Template {
    let env = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    Template {
        name: EXIT_HANDLER.to_owned(),
        container: Some(Container {
            name: "main".to_owned(),
            image: Some(options.callback_image.clone()),
            command: Some(vec!["sh".to_owned(), "-ec".to_owned()]),
            args: Some(vec![
                concat!(
                    "body=$(printf '{\"workflow\":\"%s\",\"status\":\"%s\",\"event\":\"%s\"}' \"$WORKFLOW\" \"$STATUS\" \"$EVENT\")\n",
                    "curl -fsS --retry 5 --retry-all-errors -X POST -H 'Content-Type: application/json' --data \"$body\" \"$CASCADE_CALLBACK_URL\""
                )
                .to_owned(),
            ]),
            env: Some(vec![
                env("CASCADE_CALLBACK_URL", &escape(url)),
                env("WORKFLOW", "{{workflow.name}}"),
                env("STATUS", "{{workflow.status}}"),
                env("EVENT", "{{workflow.parameters.event}}"),
            ]),
            security_context: Some(SecurityContext { run_as_non_root: Some(true), allow_privilege_escalation: Some(false), ..SecurityContext::default() }),
            ..Container::default()
        }),
        retry_strategy: Some(RetryStrategy { limit: 3, retry_policy: "Always".to_owned(), backoff: Some(Backoff { duration: "5s".to_owned(), factor: 2, cap: Some("1m".to_owned()) }), expression: None }),
        ..Template::default()
    }
}

/// Argo names: `^[a-zA-Z0-9][-a-zA-Z0-9]*$`.
pub fn sanitize(id: &str) -> String {
    let name: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_start_matches('-');
    if name.is_empty() {
        "job".to_owned()
    } else {
        name.chars().take(100).collect()
    }
}

fn task_names(plan: &Plan) -> Result<Vec<String>, RenderError> {
    let mut names: Vec<String> = Vec::new();
    for job in &plan.jobs {
        let name = sanitize(job.id.as_str());
        if let Some(first) = names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(&name) || name == "main")
        {
            return Err(RenderError::NameCollision {
                first: plan.jobs[first].id.to_string(),
                second: job.id.to_string(),
                name,
            });
        }
        names.push(name);
    }
    Ok(names)
}

/// Escapes Argo's `{{` in text that must stay literal.
pub fn escape(text: &str) -> String {
    text.replace("{{", "{{='{{'}}")
}

fn text_at(value: &serde_json::Value, path: &[&str]) -> Option<String> {
    let mut v = value;
    for p in path {
        v = v.get(p)?;
    }
    Some(expr::to_text(v))
}

/// The commit a job starts in, as Argo's executor fetches it.
fn checkout(options: &RenderOptions) -> Vec<Artifact> {
    options
        .checkout
        .iter()
        .map(|c| Artifact {
            name: "source".to_owned(),
            path: CHECKOUT_DIR.to_owned(),
            git: Some(GitArtifact {
                repo: c.repo.clone(),
                revision: Some(c.revision.clone()),
            }),
        })
        .collect()
}

/// The task in `main` and the container template of one job.
fn job_parts(
    plan: &Plan,
    index: usize,
    job: &PlannedJob,
    names: &[String],
    parts: &[usize],
    config: &AdminConfig,
    options: &RenderOptions,
) -> Result<(DagTask, Template), RenderError> {
    let name = names[index].clone();
    let template_name = format!("job-{name}");
    let cx = Cx {
        plan,
        job,
        names,
        parts,
        index,
    };
    cx.check_parts()?;
    let py = python_parts(plan, job, config, options)?;
    let (params, mut env) = parameters_and_env(&cx, job, config)?;
    let (command, args, outputs) = command(job, py.install, &py.items);
    env.extend(py.env);
    env.extend(
        outputs
            .iter()
            .filter(|(_, s)| **s != OutputSource::File)
            .take(1)
            .map(|_| EnvVar {
                name: "CASCADE_STDOUT_TO".to_owned(),
                value: Some(
                    outputs
                        .iter()
                        .filter(|(_, s)| **s != OutputSource::File)
                        .map(|(n, _)| (*n).clone())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
                value_from: None,
            }),
    );
    let mut template = Template {
        name: template_name.clone(),
        inputs: Io {
            parameters: params
                .iter()
                .map(|(var, _)| Parameter {
                    name: var.clone(),
                    ..Parameter::default()
                })
                .collect(),
            artifacts: checkout(options),
        },
        outputs: Io {
            parameters: output_params(plan, job, &py.items),
            ..Io::default()
        },
        container: Some(Container {
            name: "main".to_owned(),
            image: Some(job.image.clone().unwrap_or_else(|| {
                if py.python {
                    config.python.image.clone()
                } else {
                    options.default_image.clone()
                }
            })),
            command: Some(command),
            args: Some(args),
            env: (!env.is_empty()).then_some(env),
            working_dir: options.checkout.as_ref().map(|_| CHECKOUT_DIR.to_owned()),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                allow_privilege_escalation: Some(false),
                ..SecurityContext::default()
            }),
            ..Container::default()
        }),
        retry_strategy: job.retry.as_ref().map(retry_strategy),
        active_deadline_seconds: job
            .timeout
            .map(|t| i64::try_from(t.as_secs().max(1)).unwrap_or(i64::MAX)),
        ..Template::default()
    };
    apply_runner(&mut template, job, config)?;
    let (with_items, with_param) = cx.fan_out()?;
    let (depends, when) = cx.depends()?;
    let task = DagTask {
        name,
        template: template_name,
        inline: None,
        depends,
        when,
        arguments: Arguments {
            parameters: params
                .into_iter()
                .map(|(var, value)| Parameter {
                    name: var,
                    value: Some(value),
                    value_from: None,
                })
                .collect(),
        },
        with_items,
        with_param,
    };
    Ok((task, template))
}

/// What being a Python task adds to a job.
struct PythonParts<'a> {
    python: bool,
    /// `[python] install`, run before the task.
    install: Option<&'a str>,
    /// Outputs also written as their items' JSON texts (`<name>--items`).
    items: Vec<String>,
    /// `HOME` for `install`, `CASCADE_ITEMS_OF` for `items`.
    env: Vec<EnvVar>,
}

/// A Python task needs the checkout (its pipeline's files); only one can write JSON
/// items, as its image has `python3`.
fn python_parts<'a>(
    plan: &Plan,
    job: &PlannedJob,
    config: &'a AdminConfig,
    options: &RenderOptions,
) -> Result<PythonParts<'a>, RenderError> {
    let python = is_python(job);
    if python && options.checkout.is_none() {
        return Err(RenderError::PythonWithoutCheckout {
            job: job.id.to_string(),
        });
    }
    let install = config.python.install.as_deref().filter(|_| python);
    let items = items_outputs(plan, job);
    if !items.is_empty() && !python {
        return Err(RenderError::Unsupported {
            job: job.id.to_string(),
            expr: "toJSON(item)".to_owned(),
            reason: "a map over another job's output passes JSON items only when that job is a Python task".to_owned(),
        });
    }
    let literal = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env = Vec::new();
    if install.is_some() {
        env.push(literal("HOME", PYTHON_HOME.to_owned()));
    }
    if !items.is_empty() {
        env.push(literal("CASCADE_ITEMS_OF", items.join(" ")));
    }
    Ok(PythonParts {
        python,
        install,
        items,
        env,
    })
}

/// Input parameters of a job template: name and value.
type Params = Vec<(String, String)>;

/// The job's environment: every value through an input parameter (so Argo fills in task
/// outputs at run time), then its secrets.
fn parameters_and_env(
    cx: &Cx<'_>,
    job: &PlannedJob,
    config: &AdminConfig,
) -> Result<(Params, Vec<EnvVar>), RenderError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for (var, template) in &job.env {
        params.push((var.clone(), cx.text(template)?));
    }
    for binding in &job.script.bindings {
        params.push((binding.var.clone(), cx.value(&binding.expr)?));
    }
    let mut env: Vec<EnvVar> = params
        .iter()
        .map(|(var, _)| EnvVar {
            name: var.clone(),
            value: Some(format!("{{{{inputs.parameters.{var}}}}}")),
            value_from: None,
        })
        .collect();
    env.extend(secret_env(job, config)?);
    Ok((params, env))
}

/// Declared secrets as `secretKeyRef`s; a secret the admin config does not map is an error.
fn secret_env(job: &PlannedJob, config: &AdminConfig) -> Result<Vec<EnvVar>, RenderError> {
    job.secrets
        .iter()
        .map(|secret| {
            let Some(r) = config.secrets.get(secret) else {
                return Err(RenderError::UnknownSecret {
                    job: job.id.to_string(),
                    secret: secret.clone(),
                    known: config
                        .secrets
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            Ok(EnvVar {
                name: secret.clone(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: r.secret.clone(),
                        key: r.key.clone(),
                        optional: Some(false),
                    }),
                    ..EnvVarSource::default()
                }),
            })
        })
        .collect()
}

/// `retry` → `retryStrategy` (limit counts retries, as ours does).
fn retry_strategy(r: &cascade_spec::model::Retry) -> RetryStrategy {
    RetryStrategy {
        limit: i64::from(r.limit),
        retry_policy: "OnFailure".to_owned(),
        backoff: Some(Backoff {
            duration: cascade_spec::duration::format(r.backoff),
            factor: 2,
            cap: r.max_backoff.map(cascade_spec::duration::format),
        }),
        expression: (!r.on_exit_codes.is_empty()).then(|| {
            format!(
                "asInt(lastRetry.exitCode) in [{}]",
                r.on_exit_codes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }),
    }
}

/// A runner alias and the job's own `resources:` (which wins field by field) → requests
/// and limits (the same amounts: a job gets what it asked for, no more); the alias's node
/// selector and tolerations. A job with neither gets no `resources`.
fn apply_runner(
    template: &mut Template,
    job: &PlannedJob,
    config: &AdminConfig,
) -> Result<(), RenderError> {
    let unknown = |unknown: cascade_spec::config::UnknownRunner| RenderError::UnknownRunner {
        job: job.id.to_string(),
        runner: unknown.name.clone(),
        known: unknown.known(),
    };
    let wanted = config
        .job_resources(job.runner.as_deref(), job.resources.as_ref())
        .map_err(unknown)?;
    let mut amounts = BTreeMap::new();
    if let Some(cpu) = wanted.cpu_milli {
        amounts.insert("cpu".to_owned(), Quantity(format_cpu(cpu)));
    }
    if let Some(memory) = wanted.memory {
        amounts.insert("memory".to_owned(), Quantity(memory));
    }
    if let (Some(c), false) = (template.container.as_mut(), amounts.is_empty()) {
        c.resources = Some(ResourceRequirements {
            requests: Some(amounts.clone()),
            limits: Some(amounts),
            ..ResourceRequirements::default()
        });
    }
    let Some(name) = &job.runner else {
        return Ok(());
    };
    let r = config.runner(name).map_err(unknown)?;
    template.node_selector = r
        .node_selector
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    template.tolerations = r
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: None,
        })
        .collect();
    Ok(())
}

/// Output parameters, read from the files the wrapper writes; a list that some job fans
/// out over defaults to `[]` so a skipped producer does not fail its consumer.
/// The items outputs (`<name>--items`) follow, each defaulting to `[]` as well.
fn output_params(plan: &Plan, job: &PlannedJob, items: &[String]) -> Vec<Parameter> {
    let param = |name: String, default: &str| Parameter {
        value: None,
        value_from: Some(ValueFrom {
            path: Some(format!("{OUTPUT_DIR}/{name}")),
            default: Some(default.to_owned()),
        }),
        name,
    };
    job.outputs
        .keys()
        .map(|o| {
            param(
                o.clone(),
                if feeds_fan_out(plan, &job.id, o) {
                    "[]"
                } else {
                    ""
                },
            )
        })
        .chain(
            items
                .iter()
                .map(|o| param(format!("{o}{ITEMS_SUFFIX}"), "[]")),
        )
        .collect()
}

/// The outputs of `producer` that a map reading `toJSON(item)` iterates over: the
/// producer writes each also as the list of its items' JSON texts.
fn items_outputs(plan: &Plan, producer: &PlannedJob) -> Vec<String> {
    producer
        .outputs
        .keys()
        .filter(|o| {
            plan.jobs.iter().any(|j| {
                json_items(j)
                    && dynamic_source(j).is_some_and(|r| {
                        r.job() == Some(producer.id.as_str()) && r.output_name() == Some(o.as_str())
                    })
            })
        })
        .cloned()
        .collect()
}

/// The list a dynamic fan-out's expression names: `x` of `fromJSON(x)`, else itself
/// (Argo's `withParam` parses the JSON text either way).
fn unwrap_from_json(e: &Expr) -> &Expr {
    match e {
        Expr::Call {
            func: Func::FromJson,
            args,
            ..
        } if args.len() == 1 => &args[0],
        other => other,
    }
}

/// The `needs.<job>.outputs.<name>` a dynamic fan-out iterates over (bare or in `fromJSON`).
fn dynamic_source(job: &PlannedJob) -> Option<&expr::Reference> {
    let FanOut::Dynamic(e) = &job.fan_out else {
        return None;
    };
    match unwrap_from_json(e) {
        Expr::Ref(r) if r.root == Root::Needs && r.output_name().is_some() && r.path.len() == 3 => {
            Some(r)
        }
        _ => None,
    }
}

/// The expressions a job's env and script read.
fn job_exprs(job: &PlannedJob) -> impl Iterator<Item = &Expr> {
    job.script
        .bindings
        .iter()
        .map(|b| &b.expr)
        .chain(job.env.iter().flat_map(|(_, t)| t.exprs()))
}

/// `toJSON(item)`: the whole item as JSON text.
fn is_json_item(e: &Expr) -> bool {
    matches!(e, Expr::Call { func: Func::ToJson, args, .. }
        if matches!(args.as_slice(), [Expr::Ref(r)] if r.root == Root::Item && r.path.is_empty()))
}

/// Whether a job reads its item as `toJSON(item)` (its items are then JSON texts).
fn json_items(job: &PlannedJob) -> bool {
    !matches!(job.fan_out, FanOut::Single) && job_exprs(job).any(is_json_item)
}

fn format_cpu(milli: u32) -> String {
    if milli.is_multiple_of(1000) {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// Whether an output of `producer` is the list some job fans out over.
fn feeds_fan_out(plan: &Plan, producer: &cascade_spec::JobId, output: &str) -> bool {
    plan.jobs.iter().any(|j| match &j.fan_out {
        FanOut::Dynamic(e) => e
            .references()
            .iter()
            .any(|r| r.job() == Some(producer.as_str()) && r.output_name() == Some(output)),
        _ => false,
    })
}

/// The wrapper that turns `$CASCADE_OUTPUT` lines (and stdout, when declared) into one
/// file per output for Argo. Fixed text: user data never appears in it.
const WRAPPER: &str = r#"set -e
mkdir -p /tmp/cascade/outputs
export CASCADE_OUTPUT=/tmp/cascade/output
: > "$CASCADE_OUTPUT"
if [ -n "${CASCADE_STDOUT_TO:-}" ]; then
  status=0
  "$CASCADE_SHELL" -ec "$1" > /tmp/cascade/stdout || status=$?
  cat /tmp/cascade/stdout
  for n in $CASCADE_STDOUT_TO; do cp /tmp/cascade/stdout "/tmp/cascade/outputs/$n"; done
  [ "$status" -eq 0 ] || exit "$status"
else
  "$CASCADE_SHELL" -ec "$1"
fi
awk -v dir=/tmp/cascade/outputs '
  d != "" { if ($0 == d) { close(f); d = ""; next } printf "%s%s", sep, $0 > f; sep = "\n"; next }
  /^[A-Za-z_][A-Za-z0-9_-]*<</ { i = index($0, "<<"); f = dir "/" substr($0, 1, i - 1); d = substr($0, i + 2); printf "" > f; sep = ""; next }
  /^[A-Za-z_][A-Za-z0-9_-]*=/ { i = index($0, "="); f = dir "/" substr($0, 1, i - 1); printf "%s", substr($0, i + 1) > f; close(f); next }
' "$CASCADE_OUTPUT""#;

/// Writes each output named in `$CASCADE_ITEMS_OF` (a list) again as the list of its
/// items' JSON texts, `<name>--items`, for a map that reads `toJSON(item)`. Only in Python
/// tasks (their image has `python3`); fixed text.
const ITEMS_STEP: &str = r#"
for n in ${CASCADE_ITEMS_OF:-}; do
  python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
json.dump([json.dumps(i) for i in v] if isinstance(v, list) else v, open(sys.argv[2], "w"))' "/tmp/cascade/outputs/$n" "/tmp/cascade/outputs/$n--items"
done"#;

/// `command` and `args` of a job's container, and its outputs. `install` (a Python task's
/// `[python] install`) runs first, in a writable `$HOME`; `items` are the outputs also
/// written as JSON item texts.
fn command<'a>(
    job: &'a PlannedJob,
    install: Option<&str>,
    items: &[String],
) -> (
    Vec<String>,
    Vec<String>,
    Vec<(&'a String, &'a OutputSource)>,
) {
    let shell = match job.shell {
        Shell::Sh => "sh",
        Shell::Bash => "bash",
    };
    let script = escape(&match install {
        Some(install) => format!("mkdir -p \"$HOME\"\n{install}\n{}", job.script.text),
        None => job.script.text.clone(),
    });
    let outputs: Vec<(&String, &OutputSource)> = job.outputs.iter().collect();
    if outputs.is_empty() {
        return (
            vec![shell.to_owned(), "-ec".to_owned()],
            vec![script],
            outputs,
        );
    }
    let wrapper = if items.is_empty() {
        WRAPPER.to_owned()
    } else {
        format!("{WRAPPER}{ITEMS_STEP}")
    };
    (
        vec!["sh".to_owned(), "-c".to_owned()],
        vec![
            escape(&wrapper).replace("\"$CASCADE_SHELL\"", shell),
            "cascade-job".to_owned(),
            script,
        ],
        outputs,
    )
}

/// Translation context of one job.
struct Cx<'a> {
    plan: &'a Plan,
    job: &'a PlannedJob,
    names: &'a [String],
    /// The nested DAG (part) of each job; `depends` can only name tasks of the same part.
    parts: &'a [usize],
    index: usize,
}

impl Cx<'_> {
    /// Names of the needs in the same part (earlier parts are waited for as a whole).
    fn local_needs(&self) -> Vec<String> {
        self.job
            .needs
            .iter()
            .filter(|&&i| self.parts[i] == self.parts[self.index])
            .map(|&i| self.names[i].clone())
            .collect()
    }

    /// Refuses what cannot keep its meaning across parts: a condition, or an output,
    /// that reads a job of an earlier part.
    fn check_parts(&self) -> Result<(), RenderError> {
        let part = self.parts[self.index];
        let across: Vec<&str> = self
            .job
            .needs
            .iter()
            .filter(|&&i| self.parts[i] != part)
            .map(|&i| self.plan.jobs[i].id.as_str())
            .collect();
        if across.is_empty() {
            return Ok(());
        }
        let mut exprs: Vec<&Expr> = self.job.script.bindings.iter().map(|b| &b.expr).collect();
        exprs.extend(self.job.env.iter().flat_map(|(_, t)| t.exprs()));
        if let FanOut::Dynamic(e) = &self.job.fan_out {
            exprs.push(e);
        }
        for e in exprs {
            if e.references()
                .iter()
                .any(|r| r.job().is_some_and(|j| across.contains(&j)))
            {
                return Err(self.unsupported(e, "it reads a job in an earlier part of a pipeline split for Argo's 200-task limit"));
            }
        }
        match &self.job.condition {
            Some(c) => Err(self.unsupported(
                c,
                "its `if:` spans parts of a pipeline split for Argo's 200-task limit",
            )),
            None => Ok(()),
        }
    }

    fn unsupported(&self, e: &Expr, reason: &str) -> RenderError {
        RenderError::Unsupported {
            job: self.job.id.to_string(),
            expr: e.to_string(),
            reason: reason.to_owned(),
        }
    }

    fn task_of(&self, job: &str) -> String {
        self.plan
            .jobs
            .iter()
            .position(|j| j.id.as_str() == job)
            .map_or_else(|| sanitize(job), |i| self.names[i].clone())
    }

    /// A text with expressions as an Argo parameter value.
    fn text(&self, template: &TextTemplate) -> Result<String, RenderError> {
        let mut out = String::new();
        for s in &template.segments {
            match s {
                Segment::Text(t) => out.push_str(&escape(t)),
                Segment::Expr { expr, .. } => out.push_str(&self.value(expr)?),
            }
        }
        Ok(out)
    }

    /// One expression as an Argo parameter value: run-time references become Argo
    /// variables; everything known now (inputs, event) is evaluated and escaped.
    fn value(&self, e: &Expr) -> Result<String, RenderError> {
        if let Expr::Call {
            func: Func::ToJson,
            args,
            ..
        } = e
            && let [Expr::Ref(r)] = args.as_slice()
        {
            // A mapped job's output: Argo's aggregate is the JSON list of the items' texts.
            if r.output_name().is_some() && r.path.len() == 3 {
                let job = r.job().unwrap_or_default();
                let mapped = self
                    .plan
                    .jobs
                    .iter()
                    .find(|j| j.id.as_str() == job)
                    .is_some_and(|j| !matches!(j.fan_out, FanOut::Single));
                if mapped {
                    return Ok(format!(
                        "{{{{tasks.{}.outputs.parameters.{}}}}}",
                        self.task_of(job),
                        r.output_name().unwrap_or_default()
                    ));
                }
                return Err(self.unsupported(
                    e,
                    "`toJSON` of an output is passed only for a job with `for_each` (the list of its items' outputs)",
                ));
            }
            // The items are JSON texts (see `fan_out`).
            if r.root == Root::Item && r.path.is_empty() {
                if matches!(self.job.fan_out, FanOut::Matrix(_)) {
                    return Err(self.unsupported(e, "a matrix item is passed field by field"));
                }
                if job_exprs(self.job).any(|x| matches!(x, Expr::Ref(r) if r.root == Root::Item)) {
                    return Err(self.unsupported(
                        e,
                        "a job reads its item either as `item` or as `toJSON(item)`, not both",
                    ));
                }
                return Ok("{{item}}".to_owned());
            }
        }
        if let Expr::Ref(r) = e {
            match r.root {
                Root::Needs if r.output_name().is_some() && r.path.len() == 3 => {
                    return Ok(format!(
                        "{{{{tasks.{}.outputs.parameters.{}}}}}",
                        self.task_of(r.job().unwrap_or_default()),
                        r.output_name().unwrap_or_default()
                    ));
                }
                Root::Needs if r.is_result() => {
                    return Ok(format!(
                        "{{{{tasks.{}.status}}}}",
                        self.task_of(r.job().unwrap_or_default())
                    ));
                }
                Root::Item if r.path.is_empty() => return Ok("{{item}}".to_owned()),
                Root::Matrix => {
                    return Ok(format!(
                        "{{{{item.{}}}}}",
                        r.matrix_key().unwrap_or_default()
                    ));
                }
                Root::Item => {
                    return Err(self.unsupported(e, "fields of `item` are not passed to Argo"));
                }
                Root::Needs => {
                    return Err(self.unsupported(
                        e,
                        "only whole outputs and results are passed between Argo tasks",
                    ));
                }
                Root::Inputs | Root::Event => {}
            }
        }
        if e.references()
            .iter()
            .any(|r| matches!(r.root, Root::Needs | Root::Item | Root::Matrix))
            || !e.status_functions().is_empty()
        {
            return Err(self.unsupported(
                e,
                "expressions over run-time values must be a single reference",
            ));
        }
        Ok(escape(&expr::to_text(&expr::eval(e, &Static(self.plan)))))
    }

    fn fan_out(&self) -> Result<(Option<Vec<serde_json::Value>>, Option<String>), RenderError> {
        // Items as the job reads them: their text, or their JSON text for `toJSON(item)`.
        let json = json_items(self.job);
        let text = |v: &serde_json::Value| {
            serde_json::Value::String(escape(&if json {
                v.to_string()
            } else {
                expr::to_text(v)
            }))
        };
        if json && let Some(r) = dynamic_source(self.job) {
            return Ok((
                None,
                Some(format!(
                    "{{{{tasks.{}.outputs.parameters.{}{ITEMS_SUFFIX}}}}}",
                    self.task_of(r.job().unwrap_or_default()),
                    r.output_name().unwrap_or_default()
                )),
            ));
        }
        Ok(match &self.job.fan_out {
            FanOut::Single => (None, None),
            FanOut::Matrix(combos) => (
                Some(
                    combos
                        .iter()
                        .map(|c| {
                            serde_json::Value::Object(
                                c.iter()
                                    .map(|(k, v)| (k.clone(), serde_json::Value::String(escape(v))))
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
                None,
            ),
            FanOut::Items(items) => (Some(items.iter().map(text).collect()), None),
            FanOut::Dynamic(e) => {
                let inner = unwrap_from_json(e);
                match inner {
                    Expr::Ref(r) if r.root == Root::Needs => (None, Some(self.value(inner)?)),
                    _ => {
                        let value = expr::eval(e, &Static(self.plan));
                        let list = match value {
                            serde_json::Value::Array(a) => a,
                            serde_json::Value::String(s) => {
                                serde_json::from_str(&s).unwrap_or_default()
                            }
                            _ => Vec::new(),
                        };
                        (Some(list.iter().map(text).collect()), None)
                    }
                }
            }
        })
    }

    /// `depends` (and a `when` for conditions known now) from `needs` and `if:`.
    fn depends(&self) -> Result<(Option<String>, Option<String>), RenderError> {
        let needs = self.local_needs();
        let succeeded = |n: &str| format!("{n}.Succeeded");
        let any = |n: &str| {
            format!("({n}.Succeeded || {n}.Failed || {n}.Errored || {n}.Skipped || {n}.Omitted)")
        };
        let all_succeeded = needs
            .iter()
            .map(|n| succeeded(n))
            .collect::<Vec<_>>()
            .join(" && ");
        let Some(condition) = &self.job.condition else {
            return Ok(((!needs.is_empty()).then_some(all_succeeded), None));
        };
        let mut when = Vec::new();
        let mut translated = Vec::new();
        for c in condition.conjuncts() {
            match self.output_comparison(c) {
                Some(w) => when.push(w),
                None => translated.push(self.dep(c)?),
            }
        }
        let mut translated = Dep::all(translated);
        let when = (!when.is_empty()).then(|| when.join(" && "));
        if condition.status_functions().is_empty() && !needs.is_empty() {
            translated = Dep::and(Dep::Expr(all_succeeded), translated);
        }
        // Every need must appear so the task waits for all of them.
        let mentioned = |n: &str, d: &Dep| matches!(d, Dep::Expr(t) if t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).any(|w| w == n));
        for n in &needs {
            if !mentioned(n, &translated) {
                translated = Dep::and(translated, Dep::Expr(any(n)));
            }
        }
        Ok(match translated {
            Dep::True => (None, when),
            Dep::False => (
                (!needs.is_empty()).then(|| {
                    needs
                        .iter()
                        .map(|n| any(n))
                        .collect::<Vec<_>>()
                        .join(" && ")
                }),
                Some("false".to_owned()),
            ),
            Dep::Expr(d) => (Some(d), when),
        })
    }

    /// `needs.<job>.outputs.<name> == 'word'` (or `!=`) as an Argo `when` clause. The
    /// output is data: a value with a quote in it makes the clause fail, never run code.
    fn output_comparison(&self, e: &Expr) -> Option<String> {
        let Expr::Binary {
            op: op @ (expr::BinOp::Eq | expr::BinOp::Ne),
            lhs,
            rhs,
            ..
        } = e
        else {
            return None;
        };
        let pick = |a: &Expr, b: &Expr| match (a, b) {
            (Expr::Ref(r), Expr::Literal { value, .. })
                if r.output_name().is_some() && r.path.len() == 3 =>
            {
                Some((r.clone(), expr::to_text(value)))
            }
            _ => None,
        };
        let (r, word) = pick(lhs, rhs).or_else(|| pick(rhs, lhs))?;
        if word.contains(['\'', '{', '}']) {
            return None;
        }
        let symbol = if *op == expr::BinOp::Eq { "==" } else { "!=" };
        Some(format!(
            "'{{{{tasks.{}.outputs.parameters.{}}}}}' {symbol} '{word}'",
            self.task_of(r.job().unwrap_or_default()),
            r.output_name().unwrap_or_default()
        ))
    }

    fn dep(&self, e: &Expr) -> Result<Dep, RenderError> {
        let needs = self.local_needs();
        let join = |f: &dyn Fn(&str) -> String, op: &str| -> Dep {
            if needs.is_empty() {
                Dep::True
            } else {
                Dep::Expr(needs.iter().map(|n| f(n)).collect::<Vec<_>>().join(op))
            }
        };
        Ok(match e {
            Expr::Call {
                func: Func::Success,
                ..
            } => join(&|n| format!("{n}.Succeeded"), " && "),
            Expr::Call {
                func: Func::Always, ..
            } => Dep::True,
            Expr::Call {
                func: Func::Failure,
                ..
            } => {
                if needs.is_empty() {
                    Dep::False
                } else {
                    join(&|n| format!("({n}.Failed || {n}.Errored)"), " || ")
                }
            }
            // A stopped workflow runs no further tasks; its exit handler sees the status.
            Expr::Call {
                func: Func::Cancelled,
                ..
            } => Dep::False,
            Expr::Not { expr, .. } => Dep::not(self.dep(expr)?),
            Expr::And { terms, .. } => Dep::all(
                terms
                    .iter()
                    .map(|t| self.dep(t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Expr::Or { terms, .. } => Dep::any(
                terms
                    .iter()
                    .map(|t| self.dep(t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Expr::Binary {
                op: op @ (expr::BinOp::Eq | expr::BinOp::Ne),
                lhs,
                rhs,
                ..
            } => {
                let result = |a: &Expr, b: &Expr| match (a, b) {
                    (
                        Expr::Ref(r),
                        Expr::Literal {
                            value: serde_json::Value::String(s),
                            ..
                        },
                    ) if r.is_result() => {
                        Some((self.task_of(r.job().unwrap_or_default()), s.to_lowercase()))
                    }
                    _ => None,
                };
                if let Some((task, word)) = result(lhs, rhs).or_else(|| result(rhs, lhs)) {
                    let d = match word.as_str() {
                        "success" => Dep::Expr(format!("{task}.Succeeded")),
                        "failure" => Dep::Expr(format!("({task}.Failed || {task}.Errored)")),
                        "skipped" => Dep::Expr(format!("({task}.Skipped || {task}.Omitted)")),
                        _ => Dep::False,
                    };
                    if *op == expr::BinOp::Ne {
                        Dep::not(d)
                    } else {
                        d
                    }
                } else {
                    self.known_now(e)?
                }
            }
            _ => self.known_now(e)?,
        })
    }

    /// A condition over inputs and event only, decided at render time.
    fn known_now(&self, e: &Expr) -> Result<Dep, RenderError> {
        if e.references()
            .iter()
            .any(|r| !matches!(r.root, Root::Inputs | Root::Event))
            || !e.status_functions().is_empty()
        {
            return Err(self.unsupported(
                e,
                "conditions on run-time values must compare `needs.<job>.result` with a word",
            ));
        }
        Ok(if expr::truthy(&expr::eval(e, &Static(self.plan))) {
            Dep::True
        } else {
            Dep::False
        })
    }
}

/// A `depends` expression being built.
#[derive(Debug, Clone, PartialEq)]
enum Dep {
    True,
    False,
    Expr(String),
}

impl Dep {
    fn and(a: Dep, b: Dep) -> Dep {
        match (a, b) {
            (Dep::False, _) | (_, Dep::False) => Dep::False,
            (Dep::True, x) | (x, Dep::True) => x,
            (Dep::Expr(a), Dep::Expr(b)) => {
                Dep::Expr(format!("{} && {}", group_or(&a), group_or(&b)))
            }
        }
    }
    /// `a && b && …` in one pass (folding pairwise would copy the text once per term).
    fn all(terms: Vec<Dep>) -> Dep {
        let mut parts = Vec::new();
        for t in terms {
            match t {
                Dep::False => return Dep::False,
                Dep::True => {}
                Dep::Expr(e) => parts.push(e),
            }
        }
        match parts.len() {
            0 => Dep::True,
            // A single part keeps its text as it was (no parentheses added).
            1 => Dep::Expr(parts.swap_remove(0)),
            _ => Dep::Expr(
                parts
                    .iter()
                    .map(|p| group_or(p))
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
        }
    }
    /// `a || b || …` in one pass.
    fn any(terms: Vec<Dep>) -> Dep {
        let mut parts = Vec::new();
        for t in terms {
            match t {
                Dep::True => return Dep::True,
                Dep::False => {}
                Dep::Expr(e) => parts.push(e),
            }
        }
        if parts.is_empty() {
            Dep::False
        } else {
            // `&&` binds tighter than `||`: no parentheses needed.
            Dep::Expr(parts.join(" || "))
        }
    }
    fn not(a: Dep) -> Dep {
        match a {
            Dep::True => Dep::False,
            Dep::False => Dep::True,
            Dep::Expr(a) if enclosed(&a) || !a.contains(' ') => Dep::Expr(format!("!{a}")),
            Dep::Expr(a) => Dep::Expr(format!("!({a})")),
        }
    }
}

/// Parenthesises an operand of `&&` that has a top-level `||`.
fn group_or(text: &str) -> String {
    let mut depth = 0i32;
    let bytes = text.as_bytes();
    let mut top_or = false;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'|' if depth == 0 && bytes.get(i + 1) == Some(&b'|') => top_or = true,
            _ => {}
        }
    }
    if top_or {
        format!("({text})")
    } else {
        text.to_owned()
    }
}

/// Whether the whole text is one parenthesised group.
fn enclosed(text: &str) -> bool {
    if !text.starts_with('(') || !text.ends_with(')') {
        return false;
    }
    let mut depth = 0i32;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 && i + 1 < text.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Evaluation at render time: inputs and the event are known, nothing else.
struct Static<'a>(&'a Plan);

impl expr::Context for Static<'_> {
    fn lookup(&self, r: &expr::Reference) -> serde_json::Value {
        let base = match r.root {
            Root::Inputs => serde_json::Value::Object(
                self.0
                    .inputs
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            Root::Event => self.0.payload.clone(),
            _ => return serde_json::Value::Null,
        };
        r.path.iter().fold(base, |v, a| match a {
            expr::Accessor::Field(f) => v.get(f).cloned().unwrap_or_default(),
            expr::Accessor::Index(i) => v.get(*i).cloned().unwrap_or_default(),
        })
    }
    fn status(&self, _: Func) -> bool {
        false
    }
}
