//! The `$CASCADE_OUTPUT` file (and `--secrets-file`): `name=value` lines and heredoc
//! blocks (`name<<DELIM` … `DELIM`), like GitHub's `$GITHUB_OUTPUT`.

/// Why an output file could not be read; each names its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputFileError {
    #[error("line {line}: expected `name=value` or `name<<DELIMITER`, found `{found}`")]
    Malformed { line: usize, found: String },
    #[error(
        "line {line}: invalid output name `{name}` (letters, digits, `_` and `-`, not starting with a digit)"
    )]
    BadName { line: usize, name: String },
    #[error("line {line}: heredoc `{delimiter}` is never closed")]
    Unclosed { line: usize, delimiter: String },
    #[error("the output file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

pub const MAX_OUTPUT_FILE_BYTES: usize = 1 << 20;

/// Reads raw bytes: size limit first, then UTF-8, then [`parse`].
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<(String, String)>, Vec<OutputFileError>> {
    if bytes.len() > MAX_OUTPUT_FILE_BYTES {
        return Err(vec![OutputFileError::TooLarge {
            size: bytes.len(),
            limit: MAX_OUTPUT_FILE_BYTES,
        }]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let line = bytes[..e.valid_up_to()].split(|b| *b == b'\n').count();
            Err(vec![OutputFileError::Malformed {
                line,
                found: "bytes that are not UTF-8".to_owned(),
            }])
        }
    }
}

/// Parses the text; a later definition of a name replaces the earlier one (keeping its
/// place). Reports every problem.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<OutputFileError>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut errors = Vec::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let number = i + 1;
        i += 1;
        if line.trim().is_empty() {
            continue;
        }
        let (name, value) = if let Some((name, delimiter)) = heredoc(line) {
            let mut body = Vec::new();
            let mut closed = false;
            while i < lines.len() {
                let l = lines[i];
                i += 1;
                if l == delimiter {
                    closed = true;
                    break;
                }
                body.push(l);
            }
            if !closed {
                errors.push(OutputFileError::Unclosed {
                    line: number,
                    delimiter: delimiter.to_owned(),
                });
                continue;
            }
            (name, body.join("\n"))
        } else if let Some((name, value)) = line.split_once('=') {
            (name, value.to_owned())
        } else {
            errors.push(OutputFileError::Malformed {
                line: number,
                found: line.chars().take(60).collect(),
            });
            continue;
        };
        if !valid_name(name) {
            errors.push(OutputFileError::BadName {
                line: number,
                name: name.to_owned(),
            });
            continue;
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => out.push((name.to_owned(), value)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `name<<DELIM` with a non-empty delimiter and no `=` before the `<<`.
fn heredoc(line: &str) -> Option<(&str, &str)> {
    let (name, delimiter) = line.split_once("<<")?;
    (!name.contains('=') && !delimiter.is_empty()).then_some((name, delimiter))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn name_value_lines() {
        assert_eq!(
            ok("a=1\nb=x=y\n\nc=\n"),
            pairs(&[("a", "1"), ("b", "x=y"), ("c", "")])
        );
        assert_eq!(ok("a=1\r\nb=2\r\n"), pairs(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn heredocs_and_redefinition() {
        let text = "notes<<EOF\nline one\n\nk=v inside\nEOF\nn=1\nn=2\n";
        assert_eq!(
            ok(text),
            pairs(&[("notes", "line one\n\nk=v inside"), ("n", "2")])
        );
    }

    #[test]
    fn every_error_with_its_line() {
        let errors = parse("ok=1\njust text\n9bad=x\nbody<<END\nno end\n").unwrap_err();
        assert_eq!(
            errors,
            vec![
                OutputFileError::Malformed {
                    line: 2,
                    found: "just text".into()
                },
                OutputFileError::BadName {
                    line: 3,
                    name: "9bad".into()
                },
                OutputFileError::Unclosed {
                    line: 4,
                    delimiter: "END".into()
                },
            ]
        );
        assert_eq!(
            errors[0].to_string(),
            "line 2: expected `name=value` or `name<<DELIMITER`, found `just text`"
        );
    }

    #[test]
    fn limits_and_encoding() {
        let big = vec![b'a'; MAX_OUTPUT_FILE_BYTES + 1];
        assert!(matches!(
            parse_bytes(&big).unwrap_err()[0],
            OutputFileError::TooLarge { .. }
        ));
        let errors = parse_bytes(b"a=1\nb=\xff\n").unwrap_err();
        assert_eq!(
            errors[0],
            OutputFileError::Malformed {
                line: 2,
                found: "bytes that are not UTF-8".into()
            }
        );
    }
}
