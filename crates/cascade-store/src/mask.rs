//! Masking what is written: DAG definitions and event payloads pass through the
//! server's mask of known secret values before they reach the database (DESIGN §8:
//! secret values never reach events, DAG definitions or the database unmasked).
//!
//! The store does not know what a secret is (the engine's masker does, and the store
//! must not depend on the engine): the server hands it a [`Mask`], a function from text
//! to masked text, and the store applies it to every string of a JSON value, keys
//! included, since a value is masked the same wherever it sits in a document.

use std::sync::Arc;

/// Text in, the same text with every known secret replaced, out.
#[derive(Clone)]
pub struct Mask(Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for Mask {
    // The closure holds the secrets: show nothing of it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mask")
    }
}

impl Mask {
    pub fn new(mask: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(mask))
    }

    #[must_use]
    pub fn text(&self, text: &str) -> String {
        (self.0)(text)
    }

    /// `value` with every string in it (object keys too) masked. Recursive: the values
    /// written come from `serde_json`'s parser, which refuses nesting past 128 levels.
    #[must_use]
    pub fn json(&self, value: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (self.text(k), self.json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_of_a_document_is_masked() {
        let mask = Mask::new(|t| t.replace("hunter22", "***"));
        let value = serde_json::json!({
            "a": "pw=hunter22",
            "hunter22": [1, "x hunter22", {"deep": ["hunter22"]}],
            "n": 3,
        });
        assert_eq!(
            mask.json(&value),
            serde_json::json!({
                "a": "pw=***",
                "***": [1, "x ***", {"deep": ["***"]}],
                "n": 3,
            })
        );
        assert_eq!(format!("{mask:?}"), "Mask");
    }
}
