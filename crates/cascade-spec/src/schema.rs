//! The JSON Schemas of ci.yaml (for editor completion) and of a DAG JSON submission (the
//! body of `POST /api/v1/dag/execute`, DESIGN §3), generated with schemars.
//!
//! These types describe the files for the schemas only; parsing walks the node tree in
//! `parse.rs`, `dag.rs` and `job.rs`. A test compares every object's properties with the
//! field lists the parsers accept, so the two cannot drift apart.
#![expect(
    dead_code,
    reason = "the types exist to be described by schemars, never built"
)]

use schemars::JsonSchema;
use std::collections::BTreeMap;

/// A Cascade pipeline file (`ci.yaml`, version 1).
#[derive(JsonSchema)]
#[schemars(title = "Cascade pipeline (ci.yaml v1)", deny_unknown_fields)]
struct PipelineFile {
    /// Display name of the pipeline.
    name: Option<String>,
    /// What starts the pipeline; absent means it only runs when asked to.
    on: Option<OnField>,
    /// Environment for every job; values may use `${{ inputs.* }}` and `${{ event.* }}`.
    env: Option<BTreeMap<String, Scalar>>,
    /// The jobs, by id (`[A-Za-z_][A-Za-z0-9_-]*`).
    jobs: BTreeMap<String, JobField>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum OnField {
    /// One event name.
    Event(EventName),
    /// Several event names.
    Events(Vec<EventName>),
    /// Events with their filters.
    Map(Box<OnMap>),
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum EventName {
    Push,
    PullRequest,
    WorkflowDispatch,
    RepositoryDispatch,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct OnMap {
    /// Runs on pushes to matching branches or tags.
    push: Option<PushField>,
    /// Runs on pull requests against matching branches.
    pull_request: Option<PullRequestField>,
    /// Runs on a timetable.
    schedule: Option<Vec<ScheduleField>>,
    /// Runs when started by hand with inputs.
    workflow_dispatch: Option<WorkflowDispatchField>,
    /// Runs on `repository_dispatch` events of the given types.
    repository_dispatch: Option<RepositoryDispatchField>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct PushField {
    /// Branch globs that start the pipeline.
    branches: Option<Vec<String>>,
    /// Branch globs that never start it.
    #[serde(rename = "branches-ignore")]
    branches_ignore: Option<Vec<String>>,
    /// Tag globs that start the pipeline.
    tags: Option<Vec<String>>,
    /// Tag globs that never start it.
    #[serde(rename = "tags-ignore")]
    tags_ignore: Option<Vec<String>>,
    /// Path globs: run only when a changed file matches.
    paths: Option<Vec<String>>,
    /// Path globs: skip when every changed file matches.
    #[serde(rename = "paths-ignore")]
    paths_ignore: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct PullRequestField {
    /// Base branch globs.
    branches: Option<Vec<String>>,
    /// Base branch globs that never start it.
    #[serde(rename = "branches-ignore")]
    branches_ignore: Option<Vec<String>>,
    /// Path globs: run only when a changed file matches.
    paths: Option<Vec<String>>,
    /// Path globs: skip when every changed file matches.
    #[serde(rename = "paths-ignore")]
    paths_ignore: Option<Vec<String>>,
    /// Activity types; default `opened`, `synchronize`, `reopened`.
    types: Option<Vec<PullRequestType>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum PullRequestType {
    Opened,
    Synchronize,
    Reopened,
    Closed,
    Edited,
    Labeled,
    Unlabeled,
    ReadyForReview,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ScheduleField {
    /// A 5-field cron line (`0 3 * * *`) or a nickname (`@daily`).
    cron: String,
    /// IANA time zone; default UTC.
    timezone: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct WorkflowDispatchField {
    /// Inputs, read in expressions as `inputs.<name>`.
    inputs: Option<BTreeMap<String, InputField>>,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct InputField {
    description: Option<String>,
    default: Option<Scalar>,
    required: Option<bool>,
    #[serde(rename = "type")]
    kind: Option<InputType>,
    /// Allowed values of a `choice` input.
    options: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum InputType {
    String,
    Boolean,
    Number,
    Choice,
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct RepositoryDispatchField {
    /// Event types (`event_type`) that start the pipeline; empty means any.
    types: Option<Vec<String>>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum Needs {
    One(String),
    Many(Vec<String>),
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum ForEachField {
    /// `${{ needs.<job>.outputs.<name> }}` or another expression giving a list.
    Expression(String),
    /// A fixed list.
    List(Vec<Scalar>),
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum RetryField {
    /// Retries after the first attempt.
    Limit(u32),
    Policy(RetryPolicy),
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct RetryPolicy {
    /// Retries after the first attempt (0–100).
    limit: u32,
    /// Delay before the first retry (default `1s`), doubling each time.
    backoff: Option<String>,
    /// Longest delay between retries.
    max_backoff: Option<String>,
    /// Retry only on these exit codes.
    on_exit_codes: Option<Vec<u8>>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum OutputSourceField {
    /// A `name=value` line written to `$CASCADE_OUTPUT`.
    File,
    /// Standard output, trimmed.
    Stdout,
    /// Standard output parsed as JSON.
    StdoutJson,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ShellField {
    Sh,
    Bash,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum Condition {
    Expression(String),
    Fixed(bool),
}

/// What a job asks for; a field left out comes from its runner alias, if any.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct ResourcesField {
    /// CPU, more than zero: cores (`2`, `0.5`) or millicores (`"500m"`). The job's weight
    /// on the local engine (a job asking for more than the engine's capacity runs alone)
    /// and its container's requests and limits on Argo.
    cpu: Option<CpuField>,
    /// Memory, more than zero: a Kubernetes quantity (`"512Mi"`, `"1Gi"`, `"1G"`) or bytes.
    memory: Option<MemoryField>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum CpuField {
    /// Cores, in steps of at least 0.001.
    Cores(#[schemars(extend("exclusiveMinimum" = 0))] f64),
    /// Cores (`"1.5"`) or millicores (`"500m"`).
    Quantity(#[schemars(regex(pattern = r"^[0-9]*\.?[0-9]+m?$"))] String),
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum MemoryField {
    /// Bytes.
    Bytes(#[schemars(range(min = 1))] u64),
    /// A number with a unit: `Ki`, `Mi`, `Gi`, `Ti` (powers of 1024) or `k`, `M`, `G`, `T`.
    Quantity(#[schemars(regex(pattern = r"^[0-9]*\.?[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"))] String),
}

/// One job.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct JobField {
    /// Display name.
    name: Option<String>,
    /// Container image (Argo backend, or `cascade run --containers`).
    image: Option<String>,
    /// Runner alias from the admin config (`cascade.toml`).
    runner: Option<String>,
    /// CPU and memory, overriding the runner alias's values field by field.
    resources: Option<ResourcesField>,
    /// The script; `${{ }}` values reach it as environment variables, never as shell text.
    run: String,
    /// `sh` (default) or `bash`.
    shell: Option<ShellField>,
    /// Jobs that must finish first.
    needs: Option<Needs>,
    /// Environment of this job.
    env: Option<BTreeMap<String, Scalar>>,
    /// Secrets passed as environment variables (from the secret store).
    secrets: Option<Vec<String>>,
    /// Condition: `success()` (default), `failure()`, `always()`, `cancelled()`, comparisons.
    #[serde(rename = "if")]
    condition: Option<Condition>,
    /// Axis → values; the job runs once per combination (`${{ matrix.<axis> }}`).
    matrix: Option<BTreeMap<String, Vec<Scalar>>>,
    /// Fan out over a list (`${{ item }}` in each copy).
    for_each: Option<ForEachField>,
    /// Declared outputs and where they come from.
    outputs: Option<BTreeMap<String, OutputSourceField>>,
    /// Retries with exponential backoff.
    retry: Option<RetryField>,
    /// Time limit, e.g. `10m`.
    timeout: Option<String>,
    /// A failure of this job does not fail the pipeline.
    continue_on_error: Option<bool>,
    /// Run only when a changed file matches one of these globs.
    paths: Option<Vec<String>>,
}

/// The JSON Schema (draft 2020-12) of a pipeline file.
pub fn pipeline_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PipelineFile)).unwrap_or_default()
}

/// A DAG submission (the body of `POST /api/v1/dag/execute`, `cascade dag submit`).
#[derive(JsonSchema)]
#[schemars(title = "Cascade DAG submission (DAG JSON)", deny_unknown_fields)]
struct DagFile {
    /// The DAG's id: letters, digits, `_`, `-`, `.` and `:`, at most 128 characters.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.:-]{1,128}$"))]
    dag_id: Option<String>,
    /// Where it may run: `global`, `project:<id>`, `user:<name>`, `type:<worker type>` or
    /// `node:<worker id>`; unset: inferred from the tasks' `env.PROJECT_ID`, then the
    /// `dag_id`.
    scope: Option<String>,
    /// The worker that should run it.
    target_node: Option<String>,
    /// Queue priority; default `normal`.
    priority: Option<PriorityField>,
    /// The tasks, at least one; ids are unique.
    #[schemars(length(min = 1))]
    tasks: Vec<TaskField>,
}

#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
enum PriorityField {
    Low,
    Normal,
    High,
}

/// One task: a job of the pipeline the DAG becomes.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct TaskField {
    /// The task id (`[A-Za-z_][A-Za-z0-9_-]*`, at most 100 characters), named by `needs`.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$"))]
    id: String,
    /// The script; `${{ }}` values reach it as environment variables, never as shell text.
    run: String,
    /// Tasks that must finish first.
    needs: Option<Needs>,
    /// Environment of this task.
    env: Option<BTreeMap<String, Scalar>>,
    /// Retries with exponential backoff.
    retry: Option<DagRetryField>,
    /// Time limit, e.g. `10m`.
    timeout: Option<String>,
    /// Container image (Argo backend, or containers on a worker).
    image: Option<String>,
    /// Runner alias from the admin config (`cascade.toml`).
    runner: Option<String>,
    /// CPU and memory, overriding the runner alias's values field by field.
    resources: Option<ResourcesField>,
    /// Secrets passed as environment variables (from the secret store).
    secrets: Option<Vec<String>>,
    /// Condition: `success()` (default), `failure()`, `always()`, `cancelled()`, comparisons.
    #[serde(rename = "if")]
    condition: Option<Condition>,
    /// A failure of this task does not fail the DAG.
    continue_on_error: Option<bool>,
}

#[derive(JsonSchema)]
#[serde(untagged)]
enum DagRetryField {
    /// Retries after the first attempt (0–100).
    Limit(#[schemars(range(max = 100))] u32),
    Policy(DagRetryPolicy),
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
struct DagRetryPolicy {
    /// Retries after the first attempt (0–100).
    #[schemars(range(max = 100))]
    limit: u32,
    /// Delay before the first retry (default `1s`), doubling each time.
    delay: Option<String>,
    /// Longest delay between retries.
    max_delay: Option<String>,
}

/// The JSON Schema (draft 2020-12) of a DAG JSON submission.
pub fn dag_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(DagFile)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{dag, parse};

    fn properties(schema: &serde_json::Value, pointer: &str) -> Vec<String> {
        let mut names: Vec<String> = schema
            .pointer(pointer)
            .and_then(|p| p.as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn schema_matches_the_fields_the_parser_accepts() {
        let schema = pipeline_schema();
        let cases = [
            ("/properties", parse::TOP_FIELDS),
            ("/$defs/OnMap/properties", parse::ON_FIELDS),
            ("/$defs/PushField/properties", parse::PUSH_FIELDS),
            (
                "/$defs/PullRequestField/properties",
                parse::PULL_REQUEST_FIELDS,
            ),
            ("/$defs/ScheduleField/properties", parse::SCHEDULE_FIELDS),
            (
                "/$defs/WorkflowDispatchField/properties",
                parse::WORKFLOW_DISPATCH_FIELDS,
            ),
            ("/$defs/InputField/properties", parse::INPUT_FIELDS),
            (
                "/$defs/RepositoryDispatchField/properties",
                parse::REPOSITORY_DISPATCH_FIELDS,
            ),
            ("/$defs/JobField/properties", parse::JOB_FIELDS),
            ("/$defs/RetryPolicy/properties", parse::RETRY_FIELDS),
            ("/$defs/ResourcesField/properties", parse::RESOURCE_FIELDS),
        ];
        for (pointer, fields) in cases {
            assert_eq!(
                properties(&schema, pointer),
                sorted(fields),
                "drift at {pointer}"
            );
        }
    }

    #[test]
    fn dag_schema_matches_the_fields_the_dag_parser_accepts() {
        let schema = dag_schema();
        let cases = [
            ("/properties", dag::DAG_FIELDS),
            ("/$defs/TaskField/properties", dag::TASK_FIELDS),
            ("/$defs/DagRetryPolicy/properties", dag::DAG_RETRY_FIELDS),
            ("/$defs/ResourcesField/properties", parse::RESOURCE_FIELDS),
        ];
        for (pointer, fields) in cases {
            assert_eq!(
                properties(&schema, pointer),
                sorted(fields),
                "drift at {pointer}"
            );
        }
        assert_eq!(
            schema.pointer("/required"),
            Some(&serde_json::json!(["tasks"]))
        );
        assert_eq!(
            schema.pointer("/$defs/TaskField/required"),
            Some(&serde_json::json!(["id", "run"]))
        );
        for pointer in [
            "/additionalProperties",
            "/$defs/TaskField/additionalProperties",
            "/$defs/DagRetryPolicy/additionalProperties",
            "/$defs/ResourcesField/additionalProperties",
        ] {
            assert_eq!(
                schema.pointer(pointer),
                Some(&serde_json::json!(false)),
                "{pointer}"
            );
        }
    }

    #[test]
    fn job_requires_run_and_rejects_unknown_fields() {
        let schema = pipeline_schema();
        assert_eq!(
            schema.pointer("/$defs/JobField/required"),
            Some(&serde_json::json!(["run"]))
        );
        assert_eq!(
            schema.pointer("/$defs/JobField/additionalProperties"),
            Some(&serde_json::json!(false))
        );
        assert_eq!(
            schema.pointer("/additionalProperties"),
            Some(&serde_json::json!(false))
        );
    }
}
