//! An annotated `cascade.toml`, written from the JSON Schema of [`AdminConfig`] — so from
//! the `///` docs, defaults and `#[schemars(example = …)]` values of the config structs,
//! the one place they are kept. `examples/cascade.toml` is its [`Examples::Active`] form
//! (a drift test regenerates and compares it); `cascade init` writes the
//! [`Examples::Commented`] form, which reads as the built-in defaults.
//!
//! Every table and field gets its doc as `#` lines. A field with a default is written with
//! it; a field without one shows its example commented out. Map tables (`[runners]`,
//! `[repositories]`, …) show their default entries, then their example entries.

use crate::config::AdminConfig;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// What to do with the example entries of map tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Examples {
    /// Written as settings: the file documents a full configuration.
    Active,
    /// Written as comments: the file is the defaults, with examples to uncomment.
    Commented,
}

/// The annotated file.
pub fn annotated(examples: Examples) -> String {
    let schema = AdminConfig::schema();
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut out = String::new();
    out.push_str(
        "# cascade.toml: the admin config of `cascade run` (./cascade.toml or --config) and\n\
         # `cascade serve --config`. Every table is optional; a value shown is the default\n\
         # unless marked as an example.\n",
    );
    out.push_str(match examples {
        Examples::Active => {
            "# Generated from the config's documentation (crates/cascade-spec/src/config.rs)\n\
             # by `CASCADE_BLESS=1 cargo test -p cascade-spec cascade_toml`; do not edit by hand.\n"
        }
        Examples::Commented => {
            "# Uncomment and change what this machine or server needs; the whole reference is\n\
             # examples/cascade.toml in the cascade repository.\n"
        }
    });
    let Some(properties) = schema["properties"].as_object() else {
        return out;
    };
    for (name, property) in properties {
        out.push('\n');
        comment(&mut out, "", text(property, "description"));
        if let Some(def) = reference(property, &defs) {
            // A table of settings (`[orchestrator]`).
            let _ = writeln!(out, "[{}]", key(name));
            fields(&mut out, def, &defs, None, None, Examples::Active, true);
        } else if let Some(entry) = property.get("additionalProperties") {
            map(&mut out, name, property, entry, &defs, examples);
        }
    }
    out
}

/// A map table: its default entries, then its example entries.
fn map(
    out: &mut String,
    name: &str,
    property: &Value,
    entry: &Value,
    defs: &Map<String, Value>,
    examples: Examples,
) {
    let defaults = property["default"].as_object().cloned().unwrap_or_default();
    let example = property["examples"][0]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let entries = defaults
        .iter()
        .map(|e| (e, Examples::Active, "default"))
        .chain(example.iter().map(|e| (e, examples, "example")));
    // One table per entry (`[runners.small]`); the fields' docs with the first.
    if let Some(def) = reference(entry, defs) {
        for (i, ((entry_name, value), mode, what)) in entries.enumerate() {
            let hash = prefix(mode);
            let _ = writeln!(out, "# ({what})\n{hash}[{}.{}]", key(name), key(entry_name));
            let sample = example.values().next().and_then(Value::as_object);
            fields(out, def, defs, value.as_object(), sample, mode, i == 0);
        }
        return;
    }
    // One table of scalar entries (`[callbacks]`).
    let _ = writeln!(out, "[{}]", key(name));
    for ((entry_name, value), mode, what) in entries {
        let _ = writeln!(
            out,
            "{}{} = {}  # ({what})",
            prefix(mode),
            key(entry_name),
            toml(value)
        );
    }
}

/// The fields of one table; `values` are the entry's own (a map entry), else defaults.
/// With `docs`, each field's doc comes first, and a field the entry leaves unset is shown
/// commented with the value `sample` (the map's example entry) or its own example gives.
fn fields(
    out: &mut String,
    def: &Value,
    defs: &Map<String, Value>,
    values: Option<&Map<String, Value>>,
    sample: Option<&Map<String, Value>>,
    mode: Examples,
    docs: bool,
) {
    let Some(properties) = def["properties"].as_object() else {
        return;
    };
    for (name, field) in properties {
        if docs {
            comment(out, "", text(field, "description"));
            if let Some(item) = field.get("items").and_then(|i| reference(i, defs)) {
                // An array of tables (`tolerations`): the fields of each item.
                for (item_field, doc) in item["properties"].as_object().into_iter().flatten() {
                    comment(out, &format!("  {item_field}: "), text(doc, "description"));
                }
            }
        }
        let given = values.and_then(|v| v.get(name)).filter(|v| !v.is_null());
        let default = field.get("default").filter(|v| !v.is_null());
        match (given, default) {
            (Some(value), _) | (None, Some(value)) => {
                let _ = writeln!(out, "{}{} = {}", prefix(mode), key(name), toml(value));
            }
            (None, None) if !docs => {}
            (None, None) => match sample
                .and_then(|s| s.get(name))
                .or_else(|| field["examples"].get(0))
            {
                Some(example) => {
                    let _ = writeln!(out, "# {} = {}  # (example)", key(name), toml(example));
                }
                None => {
                    let _ = writeln!(out, "# {} = (unset)", key(name));
                }
            },
        }
    }
}

fn prefix(mode: Examples) -> &'static str {
    match mode {
        Examples::Active => "",
        Examples::Commented => "# ",
    }
}

/// The definition a `$ref` names, when it is a table with fields.
fn reference<'a>(value: &Value, defs: &'a Map<String, Value>) -> Option<&'a Value> {
    let name = value["$ref"].as_str()?.strip_prefix("#/$defs/")?;
    defs.get(name).filter(|d| d["properties"].is_object())
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or_default()
}

/// `text` as `#` lines, each starting with `lead` (the first) or as many spaces.
fn comment(out: &mut String, lead: &str, text: &str) {
    let indent = " ".repeat(lead.len());
    for (i, line) in text.lines().enumerate() {
        let _ = writeln!(out, "# {}{line}", if i == 0 { lead } else { &indent });
    }
}

/// A key, bare when TOML allows it, else quoted.
fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        name.to_owned()
    } else {
        Value::String(name.to_owned()).to_string()
    }
}

/// A JSON value as a TOML value (JSON string escapes are TOML's basic-string escapes).
fn toml(value: &Value) -> String {
    match value {
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", key(k), toml(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commented_form_reads_as_the_defaults() {
        let text = annotated(Examples::Commented);
        assert_eq!(AdminConfig::parse(&text).unwrap(), AdminConfig::default());
        assert!(text.contains("\n# [repositories.\"acme/app\"]\n"), "{text}");
        assert!(text.contains("\n# forge = \"github\"\n"), "{text}");
        assert!(
            text.contains("\n[runners.medium]\ncpu = 2.0\nmemory = \"4Gi\"\n"),
            "{text}"
        );
    }

    #[test]
    fn the_active_form_sets_every_example() {
        let config = AdminConfig::parse(&annotated(Examples::Active)).unwrap();
        assert_eq!(
            config.runners.keys().collect::<Vec<_>>(),
            ["small", "medium", "large", "gpu"]
        );
        assert_eq!(config.runners["gpu"].tolerations.len(), 1);
        assert_eq!(
            config.repositories["acme/app"].callback.as_deref(),
            Some("done")
        );
        assert_eq!(config.grants["PYPI_TOKEN"].scopes, ["project:web"]);
        assert_eq!(config.secrets["PYPI_TOKEN"].key, "token");
        assert!(config.callbacks.contains_key("done"));
    }

    /// Every field of every table has a `///` doc, and the file names it.
    #[test]
    fn every_field_is_documented_and_shown() {
        let schema = AdminConfig::schema();
        let text = annotated(Examples::Active);
        let mut missing = Vec::new();
        let defs = schema["$defs"].as_object().unwrap();
        for (table, def) in defs
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("AdminConfig", &schema)])
        {
            for (name, field) in def["properties"].as_object().into_iter().flatten() {
                let doc = text_of(field);
                let shown = text.contains(&format!("\n{name} = "))
                    || text.contains(&format!("\n# {name} = "))
                    || text.contains(&format!("[{name}]"))
                    || text.contains(&format!("[{name}."))
                    || text.contains(&format!("#   {name}: "));
                if doc.is_empty() || !shown {
                    missing.push(format!("{table}.{name}"));
                }
            }
        }
        assert!(missing.is_empty(), "undocumented or not shown: {missing:?}");
    }

    /// `examples/cascade.toml` is the active form, and the real loader reads it;
    /// regenerate it with `CASCADE_BLESS=1 cargo test -p cascade-spec cascade_toml`.
    #[test]
    fn examples_cascade_toml_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/cascade.toml");
        let current = annotated(Examples::Active);
        if std::env::var_os("CASCADE_BLESS").is_some() {
            std::fs::write(path, &current).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == current,
            "examples/cascade.toml is out of date; run `CASCADE_BLESS=1 cargo test -p cascade-spec cascade_toml` and commit it"
        );
        AdminConfig::parse(&committed).unwrap();
    }

    fn text_of(v: &Value) -> &str {
        v["description"].as_str().unwrap_or_default()
    }

    #[test]
    fn keys_are_quoted_when_toml_needs_it() {
        assert_eq!(key("acme/app"), "\"acme/app\"");
        assert_eq!(key("PYPI_TOKEN"), "PYPI_TOKEN");
        assert_eq!(
            toml(&serde_json::json!({"a": [1, "x\"y"], "b": null})),
            "{ a = [1, \"x\\\"y\"] }"
        );
    }
}
