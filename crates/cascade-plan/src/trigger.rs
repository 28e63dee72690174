//! What started a run: the event (name and payload), the inputs, and the changed paths.
//! Inputs are checked against the pipeline's declared `workflow_dispatch.inputs`.

use crate::error::PlanError;
use cascade_spec::Pipeline;
use cascade_spec::model::InputKind;
use indexmap::IndexMap;

/// The trigger of a run, as expressions see it (`event.*`, `inputs.*`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trigger {
    /// `push`, `pull_request`, `schedule`, `workflow_dispatch`, `repository_dispatch`, or
    /// `manual` for a run started from the command line.
    pub event_name: String,
    /// The event payload (`event.*` reads from it).
    pub payload: serde_json::Value,
    /// Inputs as given (`--input k=v`, an API call, a dispatch).
    pub inputs: IndexMap<String, String>,
    /// Files changed by the triggering change, when known; `None` means unknown, and
    /// job-level `paths:` filters then let every job run.
    pub changed_paths: Option<Vec<String>>,
}

impl Trigger {
    pub fn manual() -> Self {
        Self {
            event_name: "manual".to_owned(),
            payload: serde_json::Value::Object(serde_json::Map::new()),
            ..Self::default()
        }
    }
}

/// Applies defaults and checks given inputs against the declarations.
pub fn resolve_inputs(
    pipeline: &Pipeline,
    given: &IndexMap<String, String>,
) -> Result<IndexMap<String, serde_json::Value>, PlanError> {
    let declared = pipeline.on.workflow_dispatch.as_ref().map(|w| &w.inputs);
    let empty = IndexMap::new();
    let declared = declared.unwrap_or(&empty);
    for name in given.keys() {
        if !declared.contains_key(name) {
            return Err(PlanError::UnknownInput {
                name: name.clone(),
                known: declared.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }
    let mut out = IndexMap::new();
    for (name, input) in declared {
        let value = match (given.get(name), &input.default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) if input.required => {
                return Err(PlanError::MissingInput { name: name.clone() });
            }
            (None, None) => String::new(),
        };
        let json = match input.kind {
            InputKind::String => serde_json::Value::String(value),
            InputKind::Boolean => match value.as_str() {
                "true" => true.into(),
                "false" | "" => false.into(),
                _ => {
                    return Err(PlanError::BadInput {
                        name: name.clone(),
                        expected: "`true` or `false`".to_owned(),
                        found: value,
                    });
                }
            },
            InputKind::Number => match value
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => serde_json::Value::Number(n),
                None if value.is_empty() => serde_json::Value::Null,
                None => {
                    return Err(PlanError::BadInput {
                        name: name.clone(),
                        expected: "a number".to_owned(),
                        found: value,
                    });
                }
            },
            InputKind::Choice => {
                let empty_ok = value.is_empty() && !input.required;
                if !input.options.contains(&value) && !empty_ok {
                    return Err(PlanError::BadInput {
                        name: name.clone(),
                        expected: format!("one of {}", input.options.join(", ")),
                        found: value,
                    });
                }
                serde_json::Value::String(value)
            }
        };
        out.insert(name.clone(), json);
    }
    Ok(out)
}
