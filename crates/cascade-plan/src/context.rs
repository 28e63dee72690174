//! What `${{ }}` and `if:` see while a run goes on: the results and outputs of the jobs a
//! job needs, its matrix values or item, the inputs and the event.

use crate::plan::Plan;
use crate::run::JobResult;
use cascade_spec::expr::{self, Accessor, Func, Reference, Root, Segment, Template};
use indexmap::IndexMap;
use serde_json::Value;
use std::borrow::Cow;

/// A finished job as the jobs after it see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub result: JobResult,
    /// For a fanned-out job, each output is the list of the copies' values (fan-in).
    pub outputs: serde_json::Map<String, Value>,
}

/// The evaluation scope of one task.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    pub plan: &'a Plan,
    /// Direct needs of the job, by job id.
    pub needs: IndexMap<&'a str, &'a JobOutcome>,
    pub matrix: Option<&'a IndexMap<String, String>>,
    pub item: Option<&'a Value>,
    /// The run was cancelled.
    pub cancelled: bool,
    /// Some job this one depends on, directly or not, failed.
    pub ancestor_failed: bool,
}

impl Scope<'_> {
    /// Evaluates a job's condition; `None` is the default `success()`. As in GitHub
    /// Actions, a condition without a status function means `success() && (condition)`.
    pub fn condition(&self, condition: Option<&expr::Expr>) -> bool {
        let success = || expr::Context::status(self, Func::Success);
        match condition {
            None => success(),
            Some(c) if c.status_functions().is_empty() => {
                success() && expr::truthy(&expr::eval(c, self))
            }
            Some(c) => expr::truthy(&expr::eval(c, self)),
        }
    }

    /// Renders a template to text (env values).
    pub fn render(&self, template: &Template) -> String {
        let mut out = String::new();
        for segment in &template.segments {
            match segment {
                Segment::Text(t) => out.push_str(t),
                Segment::Expr { expr, .. } => out.push_str(&expr::to_text(&expr::eval(expr, self))),
            }
        }
        out
    }

    /// Evaluates one expression to the text passed to a process.
    pub fn text(&self, e: &expr::Expr) -> String {
        expr::to_text(&expr::eval(e, self))
    }
}

impl expr::Context for Scope<'_> {
    /// Reads in place and copies only the value found: an `if:` of 20,000 references to
    /// `event.*` must not copy a webhook's payload 20,000 times.
    fn lookup(&self, r: &Reference) -> Value {
        let path = r.path.as_slice();
        match r.root {
            Root::Needs => {
                let Some(Accessor::Field(job)) = path.first() else {
                    return Value::Null;
                };
                let Some(outcome) = self.needs.get(job.as_str()) else {
                    return Value::Null;
                };
                match path.get(1) {
                    Some(Accessor::Field(f)) if f == "result" => {
                        Value::String(outcome.result.as_str().to_owned())
                    }
                    Some(Accessor::Field(f)) if f == "outputs" => match path.get(2) {
                        Some(Accessor::Field(name)) => outcome
                            .outputs
                            .get(name)
                            .map_or(Value::Null, |v| walk(v, path.get(3..).unwrap_or_default())),
                        _ => Value::Object(outcome.outputs.clone()),
                    },
                    _ => Value::Null,
                }
            }
            Root::Inputs => match path.split_first() {
                Some((Accessor::Field(name), rest)) => self
                    .plan
                    .inputs
                    .get(name)
                    .map_or(Value::Null, |v| walk(v, rest)),
                Some((Accessor::Index(_), _)) => Value::Null,
                None => Value::Object(
                    self.plan
                        .inputs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
            },
            Root::Event => walk(&self.plan.payload, path),
            Root::Matrix => match (self.matrix, path.split_first()) {
                (Some(m), Some((Accessor::Field(key), rest))) => m
                    .get(key)
                    .map_or(Value::Null, |v| walk(&Value::String(v.clone()), rest)),
                (Some(m), None) => Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
                _ => Value::Null,
            },
            Root::Item => self.item.map_or(Value::Null, |v| walk(v, path)),
        }
    }

    fn status(&self, func: Func) -> bool {
        match func {
            Func::Always => true,
            Func::Cancelled => self.cancelled,
            Func::Failure => self.ancestor_failed,
            // success(): nothing before failed, nothing was cancelled, every need succeeded.
            _ => {
                !self.cancelled
                    && !self.ancestor_failed
                    && self.needs.values().all(|n| n.result == JobResult::Success)
            }
        }
    }
}

/// Follows accessors into a JSON value; a string that holds JSON is looked into too
/// (outputs written to `$CASCADE_OUTPUT` are text). Only what is found is copied.
fn walk(value: &Value, path: &[Accessor]) -> Value {
    let mut at = Cow::Borrowed(value);
    for accessor in path {
        let decoded = match at.as_ref() {
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(parsed @ (Value::Object(_) | Value::Array(_))) => Some(parsed),
                _ => return Value::Null,
            },
            _ => None,
        };
        if let Some(parsed) = decoded {
            at = Cow::Owned(parsed);
        }
        at = match (accessor, at) {
            (Accessor::Field(f), Cow::Borrowed(Value::Object(m))) => {
                m.get(f).map_or(Cow::Owned(Value::Null), Cow::Borrowed)
            }
            (Accessor::Index(i), Cow::Borrowed(Value::Array(a))) => {
                a.get(*i).map_or(Cow::Owned(Value::Null), Cow::Borrowed)
            }
            (Accessor::Field(f), Cow::Owned(Value::Object(mut m))) => {
                Cow::Owned(m.remove(f).unwrap_or(Value::Null))
            }
            (Accessor::Index(i), Cow::Owned(Value::Array(mut a))) => Cow::Owned(if *i < a.len() {
                a.swap_remove(*i)
            } else {
                Value::Null
            }),
            _ => return Value::Null,
        };
    }
    at.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Trigger, plan};

    fn scope_for<'a>(plan: &'a Plan, needs: IndexMap<&'a str, &'a JobOutcome>) -> Scope<'a> {
        Scope {
            plan,
            needs,
            matrix: None,
            item: None,
            cancelled: false,
            ancestor_failed: false,
        }
    }

    #[test]
    fn reads_results_outputs_inputs_and_event() {
        let p = cascade_spec::parse_pipeline(
            "t.yaml",
            "on: { workflow_dispatch: { inputs: { who: { default: you } } } }\njobs:\n  a: { run: a, outputs: { list: stdout-json, v: file } }\n  b: { needs: [a], run: 'echo ${{ needs.a.outputs.list[1] }}' }\n",
        )
        .unwrap();
        let mut trigger = Trigger::manual();
        trigger.payload = serde_json::json!({"pull_request": {"title": "t"}});
        let plan = plan(&p, &trigger, &[]).unwrap();
        let a = JobOutcome {
            result: JobResult::Success,
            outputs: serde_json::json!({"list": ["x", "y"], "v": "{\"k\": 1}"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let scope = scope_for(&plan, [("a", &a)].into_iter().collect());
        let eval = |src: &str| scope.text(&expr::parse(src).unwrap());
        assert_eq!(eval("needs.a.outputs.list[1]"), "y");
        assert_eq!(eval("needs.a.outputs.v.k"), "1");
        assert_eq!(eval("needs.a.result"), "success");
        assert_eq!(eval("inputs.who"), "you");
        assert_eq!(eval("event.pull_request.title"), "t");
        assert_eq!(eval("event.nothing.here"), "");
        assert!(scope.condition(None));
        assert!(!scope.condition(Some(&expr::parse("failure()").unwrap())));
    }

    #[test]
    fn default_condition_fails_after_a_failed_need() {
        let p = cascade_spec::parse_pipeline(
            "t.yaml",
            "jobs:\n  a: { run: a }\n  b: { needs: [a], run: b }\n",
        )
        .unwrap();
        let plan = plan(&p, &Trigger::manual(), &[]).unwrap();
        let a = JobOutcome {
            result: JobResult::Failure,
            outputs: serde_json::Map::new(),
        };
        let mut scope = scope_for(&plan, [("a", &a)].into_iter().collect());
        scope.ancestor_failed = true;
        assert!(!scope.condition(None));
        assert!(scope.condition(Some(&expr::parse("always()").unwrap())));
        assert!(scope.condition(Some(&expr::parse("failure()").unwrap())));
        scope.cancelled = true;
        assert!(scope.condition(Some(&expr::parse("cancelled()").unwrap())));
    }
}
