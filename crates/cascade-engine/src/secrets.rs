//! The local secret store: values from the environment or a `--secrets-file`
//! (`NAME=value` lines, `NAME<<EOF` blocks for multi-line values, as `$CASCADE_OUTPUT`).
//! A job gets only the secrets it declares; every known value is masked everywhere.
//!
//! A value shorter than [`MIN_SECRET_LEN`] characters (surrounding whitespace aside) is
//! refused where it is loaded, from the file or the environment: the masker cannot hide
//! it (such strings occur everywhere), so accepting it would print it in every log.

use crate::error::EngineError;
use crate::mask::{MIN_SECRET_LEN, Masker};
use indexmap::IndexMap;
use std::path::Path;

/// Secret names and values known to this run.
#[derive(Clone, Default)]
pub struct Secrets {
    values: IndexMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    /// Names only: values never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Reads a secrets file; the environment is consulted later, per declared name.
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::SecretsFile {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        let entries =
            crate::outputs::parse_bytes(&bytes).map_err(|errors| EngineError::SecretsFile {
                path: path.display().to_string(),
                // The lines hold secret values: name the lines, never quote them.
                reason: format!(
                    "malformed at line {}; expected `NAME=value` or `NAME<<EOF` … `EOF` blocks",
                    errors
                        .iter()
                        .map(|e| e.line().map_or_else(|| "?".to_owned(), |l| l.to_string()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let values: IndexMap<String, String> = entries.into_iter().collect();
        // The first short one in file order, so the error is stable.
        for (name, value) in &values {
            check_length(name, value)?;
        }
        Ok(Self { values })
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_owned(), value.to_owned());
    }

    /// A value masked like a secret that no job gets by name (a job token the server
    /// hands out in the environment itself): its key is no valid variable name.
    pub fn mask_also(&mut self, what: &str, value: &str) {
        self.values.insert(format!("\0{what}"), value.to_owned());
    }

    /// Looks up each name in the file first, then in `env`. A missing one is an error
    /// that names it and says how to provide it.
    pub fn resolve<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), EngineError> {
        let mut missing = Vec::new();
        for name in names {
            if self.values.contains_key(name) {
                continue;
            }
            match env(name) {
                Some(v) => {
                    check_length(name, &v)?;
                    self.values.insert(name.to_owned(), v);
                }
                None => missing.push(name.to_owned()),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            missing.sort();
            missing.dedup();
            Err(EngineError::MissingSecrets {
                names: missing.join(", "),
            })
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// A masker for every known value.
    pub fn masker(&self) -> Masker {
        Masker::new(self.values.values())
    }
}

/// Refuses a value the masker could not hide; the error names the secret only.
fn check_length(name: &str, value: &str) -> Result<(), EngineError> {
    if value.trim().chars().count() < MIN_SECRET_LEN {
        return Err(EngineError::ShortSecret {
            name: name.to_owned(),
            min: MIN_SECRET_LEN,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_secret_in_the_file_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "LONG=long-enough\nPIN=q7z\nALSO<<EOF\n x \nEOF\n").unwrap();
        let e = Secrets::from_file(&path).unwrap_err();
        assert!(
            matches!(&e, EngineError::ShortSecret { name, .. } if name == "PIN"),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("`PIN`") && !text.contains("q7z"), "{text}");
        // Whitespace does not count: ` x ` is one character.
        std::fs::write(&path, "ALSO<<EOF\n x \nEOF\n").unwrap();
        assert!(matches!(
            Secrets::from_file(&path),
            Err(EngineError::ShortSecret { name, .. }) if name == "ALSO"
        ));
        // Four characters, even multi-byte ones, are enough.
        std::fs::write(&path, "OK=\u{e9}t\u{e9}!\nEMPTY_IS_SHORT_TOO=\n").unwrap();
        assert!(matches!(
            Secrets::from_file(&path),
            Err(EngineError::ShortSecret { name, .. }) if name == "EMPTY_IS_SHORT_TOO"
        ));
        std::fs::write(&path, "OK=\u{e9}t\u{e9}!\n").unwrap();
        assert_eq!(
            Secrets::from_file(&path).unwrap().get("OK"),
            Some("\u{e9}t\u{e9}!")
        );
    }

    #[test]
    fn a_short_secret_from_the_environment_is_refused_by_name() {
        let mut s = Secrets::default();
        let e = s
            .resolve(["TOKEN"], &|_| Some("abc".to_owned()))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`TOKEN`") && !text.contains("abc"), "{text}");
        assert_eq!(s.get("TOKEN"), None);
        s.resolve(["TOKEN"], &|_| Some("abcd".to_owned())).unwrap();
        assert_eq!(s.get("TOKEN"), Some("abcd"));
    }

    #[test]
    fn a_malformed_secrets_file_never_quotes_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "GOOD=fine\nthis-line-is-the-secret-value\n").unwrap();
        let e = Secrets::from_file(&path).unwrap_err().to_string();
        assert!(!e.contains("this-line-is-the-secret-value"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn debug_never_shows_values() {
        let mut s = Secrets::default();
        s.insert("TOKEN", "value-that-must-not-print");
        let text = format!("{s:?}");
        assert!(
            text.contains("TOKEN") && !text.contains("value-that-must-not-print"),
            "{text}"
        );
    }

    #[test]
    fn declared_secrets_come_from_the_file_then_the_environment() {
        let mut s = Secrets::default();
        s.insert("A", "from-file");
        s.resolve(["A", "B"], &|name| {
            (name == "B").then(|| "from-env".to_owned())
        })
        .unwrap();
        assert_eq!(
            (s.get("A"), s.get("B")),
            (Some("from-file"), Some("from-env"))
        );
        let e = s.resolve(["C", "D"], &|_| None).unwrap_err().to_string();
        assert!(e.starts_with("secrets not set: C, D;"), "{e}");
    }
}
