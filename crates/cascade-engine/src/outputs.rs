//! The `$CASCADE_OUTPUT` file format (also used by `--secrets-file`), like GitHub's
//! `$GITHUB_OUTPUT`.
//!
//! This module owns the parsing rules:
//! - `name=value`: the value is the rest of the line and may contain `=`;
//! - a heredoc block: a line `name<<DELIM`, the value lines, then a line exactly `DELIM`;
//!   the value is those lines joined with `\n`, without a trailing newline;
//! - on a line holding both `=` and `<<`, whichever comes first decides the form;
//! - a trailing `\r` is dropped from every line, so CRLF files read the same;
//! - blank (empty or whitespace-only) lines outside a heredoc are ignored;
//! - a later definition of a name replaces the earlier value, keeping its first position;
//! - names match `[A-Za-z_][A-Za-z0-9_-]*`.
//!
//! It also owns where the files live while a run lasts ([`RunDir`]): output values can
//! hold secrets a job printed into them before masking, so each task's file is created
//! `0600` in a `0700` run directory before the task starts, and every one is removed when
//! the run ends, however it ends.
//!
//! Every problem in a file is reported, each with its 1-based line number, so a job author
//! fixes them all in one go. Error texts quote parts of the file, which may hold a secret:
//! mask them before they reach a log.

use std::collections::HashMap;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The extension of a task's output file in the run directory.
const OUTPUT_EXTENSION: &str = "out";

/// A run's directory for output files, from the start of a run to its end: created
/// `0700`; on drop (the run ended, failed, was cancelled, or its future was dropped)
/// every output file in it is removed, and the directory too if nothing else is left in
/// it.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the directory (and its parents) and makes it private to this user.
    ///
    /// # Errors
    ///
    /// When it cannot be created or its mode cannot be set.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            path: path.to_owned(),
        })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == OUTPUT_EXTENSION) {
                let _ = std::fs::remove_file(&path);
            }
        }
        // Fails, as it should, while a workspace or anything else is still in it.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A fresh, empty output file for one attempt, readable and writable by this user only.
///
/// Whatever was at `path` (an earlier attempt's file, or a symlink a job left there) is
/// removed first, and the new file is created exclusively, so the job's writes land in a
/// `0600` file and nothing else.
///
/// # Errors
///
/// When the file cannot be created.
pub fn prepare_file(path: &Path) -> std::io::Result<()> {
    prepare_file_for(path, None)
}

/// [`prepare_file`], the new file given to `owner` (uid, gid) through its descriptor, so
/// nothing put at the path in between is changed.
pub fn prepare_file_for(path: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Reads an output file the job may have replaced: never through a link, never a FIFO
/// or device (opened non-blocking, then checked to be a regular file), and never more
/// than one byte past [`MAX_OUTPUT_FILE_BYTES`] (the parser then says it is too large).
/// The job runs as another user and could point the path at any file of the host.
pub fn read_output_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "$CASCADE_OUTPUT is not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The largest output file accepted: outputs are for small values, not artifacts.
pub const MAX_OUTPUT_FILE_BYTES: usize = 1 << 20;

/// How much of a quoted line, name or delimiter an error shows, in characters.
const EXCERPT_CHARS: usize = 60;

/// Why an output file could not be read; each variant but `TooLarge` names its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputFileError {
    /// `found` is the offending line, cut to 60 characters (ending in `…` when cut).
    #[error("line {line}: expected `name=value` or `name<<DELIMITER`, found `{found}`")]
    Malformed { line: usize, found: String },
    #[error(
        "line {line}: invalid output name `{name}` (letters, digits, `_` and `-`, not starting with a digit)"
    )]
    BadName { line: usize, name: String },
    /// `line` is the line that opened the heredoc.
    #[error("line {line}: heredoc `{delimiter}` is never closed")]
    Unclosed { line: usize, delimiter: String },
    #[error("the output file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl OutputFileError {
    /// The 1-based line the error is about, if it is about one.
    #[must_use]
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Malformed { line, .. }
            | Self::BadName { line, .. }
            | Self::Unclosed { line, .. } => Some(*line),
            Self::TooLarge { .. } => None,
        }
    }
}

/// Parses raw file contents: the size limit first, then UTF-8, then [`parse`].
///
/// Each line that is not valid UTF-8 is reported as `Malformed` (with the bad bytes shown
/// as `\u{FFFD}`), together with every other problem in the file.
///
/// # Errors
///
/// `TooLarge` alone when over [`MAX_OUTPUT_FILE_BYTES`]; otherwise every problem found,
/// ordered by line.
pub fn parse_bytes(bytes: &[u8]) -> Result<Vec<(String, String)>, Vec<OutputFileError>> {
    if let Some(too_large) = check_size(bytes.len()) {
        return Err(vec![too_large]);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return parse(text);
    }
    let mut errors: Vec<OutputFileError> = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| std::str::from_utf8(line).is_err())
        .map(|(i, line)| {
            let line_text = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line));
            OutputFileError::Malformed {
                line: i + 1,
                found: excerpt(&line_text),
            }
        })
        .collect();
    // Lossy decoding never adds or removes a `\n` (it is never part of an invalid
    // sequence), so line numbers agree. One error per line: the encoding one wins.
    if let Err(others) = parse(&String::from_utf8_lossy(bytes)) {
        let bad_lines: Vec<Option<usize>> = errors.iter().map(OutputFileError::line).collect();
        errors.extend(
            others
                .into_iter()
                .filter(|e| !bad_lines.contains(&e.line())),
        );
        errors.sort_by_key(OutputFileError::line);
    }
    Err(errors)
}

/// Parses the text of an output file into `(name, value)` pairs in order of first
/// definition, a later definition replacing the earlier value.
///
/// # Errors
///
/// `TooLarge` alone when over [`MAX_OUTPUT_FILE_BYTES`]; otherwise every problem found,
/// ordered by line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Vec<OutputFileError>> {
    if let Some(too_large) = check_size(text.len()) {
        return Err(vec![too_large]);
    }
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut errors = Vec::new();
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .zip(1..);
    while let Some((line, number)) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        let (name, value) = match split_definition(line) {
            Definition::Value(name, value) => (name, value.to_owned()),
            Definition::Heredoc(name, delimiter) => {
                // Consume the body even when the name is bad, so its lines are not
                // mistaken for definitions.
                let mut body: Vec<&str> = Vec::new();
                let mut closed = false;
                for (body_line, _) in lines.by_ref() {
                    if body_line == delimiter {
                        closed = true;
                        break;
                    }
                    body.push(body_line);
                }
                if !closed {
                    errors.push(OutputFileError::Unclosed {
                        line: number,
                        delimiter: excerpt(delimiter),
                    });
                    continue;
                }
                (name, body.join("\n"))
            }
            Definition::Neither => {
                errors.push(OutputFileError::Malformed {
                    line: number,
                    found: excerpt(line),
                });
                continue;
            }
        };
        if name.is_empty() {
            errors.push(OutputFileError::Malformed {
                line: number,
                found: excerpt(line),
            });
        } else if !valid_name(name) {
            errors.push(OutputFileError::BadName {
                line: number,
                name: excerpt(name),
            });
        } else if let Some(&at) = index.get(name) {
            if let Some(slot) = outputs.get_mut(at) {
                slot.1 = value;
            }
        } else {
            index.insert(name.to_owned(), outputs.len());
            outputs.push((name.to_owned(), value));
        }
    }
    if errors.is_empty() {
        Ok(outputs)
    } else {
        Err(errors)
    }
}

enum Definition<'a> {
    /// `name=value`
    Value(&'a str, &'a str),
    /// `name<<DELIM`, with a non-empty delimiter
    Heredoc(&'a str, &'a str),
    Neither,
}

/// Splits a line at whichever of `=` and `<<` comes first.
fn split_definition(line: &str) -> Definition<'_> {
    let equals = line.find('=');
    let heredoc = line.find("<<");
    match (equals, heredoc) {
        (Some(e), h) if h.is_none_or(|h| e < h) => Definition::Value(&line[..e], &line[e + 1..]),
        (_, Some(h)) if h + 2 < line.len() => Definition::Heredoc(&line[..h], &line[h + 2..]),
        _ => Definition::Neither,
    }
}

/// `[A-Za-z_][A-Za-z0-9_-]*`
fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_size(size: usize) -> Option<OutputFileError> {
    (size > MAX_OUTPUT_FILE_BYTES).then_some(OutputFileError::TooLarge {
        size,
        limit: MAX_OUTPUT_FILE_BYTES,
    })
}

/// `text` cut to [`EXCERPT_CHARS`] characters, the last one `…` when cut, so one long
/// line cannot flood an error message.
fn excerpt(text: &str) -> String {
    if text.chars().count() <= EXCERPT_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(EXCERPT_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "a test making a FIFO with mkfifo, not a spawn of the product"
    )]
    fn an_output_file_replaced_by_a_link_a_fifo_or_a_huge_file_is_not_followed_or_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "TOKEN=do-not-read\n").unwrap();
        let out = dir.path().join("a.out");
        std::os::unix::fs::symlink(&secret, &out).unwrap();
        assert!(read_output_file(&out).is_err(), "followed a link");
        std::fs::remove_file(&out).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&out)
            .status()
            .unwrap();
        assert!(made.success());
        // Would block for ever if opened blocking.
        assert!(read_output_file(&out).is_err(), "read a FIFO");
        std::fs::remove_file(&out).unwrap();
        let big = std::fs::File::create(&out).unwrap();
        big.set_len(50 << 30).unwrap();
        let bytes = read_output_file(&out).unwrap();
        assert_eq!(bytes.len(), MAX_OUTPUT_FILE_BYTES + 1);
        std::fs::write(&out, "a=1\n").unwrap();
        assert_eq!(read_output_file(&out).unwrap(), b"a=1\n");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn output_files_are_private_and_gone_when_the_run_dir_is_dropped() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("runs").join("r1");
        let run_dir = RunDir::create(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("job.out");
        prepare_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        // A second attempt starts from an empty file again, and a symlink left in its
        // place is replaced, not followed.
        std::fs::write(&file, "a=1\n").unwrap();
        prepare_file(&file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        let elsewhere = base.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
        prepare_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        prepare_file(&dir.join("fan_2_.out")).unwrap();
        drop(run_dir);
        assert!(!dir.exists(), "the emptied run dir is removed");
    }

    #[test]
    fn a_run_dir_with_other_content_keeps_it() {
        let base = tempfile::tempdir().unwrap();
        let run_dir = RunDir::create(base.path()).unwrap();
        std::fs::create_dir(base.path().join("workspace")).unwrap();
        prepare_file(&base.path().join("a.out")).unwrap();
        drop(run_dir);
        assert!(base.path().join("workspace").is_dir());
        assert!(!base.path().join("a.out").exists());
    }

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn errs(text: &str) -> Vec<OutputFileError> {
        parse(text).unwrap_err()
    }

    fn malformed(line: usize, found: &str) -> OutputFileError {
        OutputFileError::Malformed {
            line,
            found: found.to_owned(),
        }
    }

    #[test]
    fn name_value_lines() {
        assert_eq!(
            ok("a=1\nb_2=two words\n_c-d=x\n"),
            pairs(&[("a", "1"), ("b_2", "two words"), ("_c-d", "x")])
        );
    }

    #[test]
    fn value_may_contain_equals_and_heredoc_marker() {
        assert_eq!(
            ok("url=https://x/?a=b&c=d\nm=<<EOF\n"),
            pairs(&[("url", "https://x/?a=b&c=d"), ("m", "<<EOF")])
        );
    }

    #[test]
    fn empty_value() {
        assert_eq!(ok("empty=\n"), pairs(&[("empty", "")]));
    }

    #[test]
    fn empty_file_and_blank_lines() {
        assert_eq!(ok(""), vec![]);
        assert_eq!(ok("\n\n  \n\t\r\n"), vec![]);
        assert_eq!(ok("\na=1\n\n\nb=2"), pairs(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn crlf_lines() {
        assert_eq!(
            ok("a=1\r\nb<<EOF\r\nx\r\n\r\ny\r\nEOF\r\n"),
            pairs(&[("a", "1"), ("b", "x\n\ny")])
        );
    }

    #[test]
    fn heredoc_block() {
        assert_eq!(
            ok("notes<<EOF\nline one\nk=v with = signs\n\nlast\nEOF\nafter=1\n"),
            pairs(&[
                ("notes", "line one\nk=v with = signs\n\nlast"),
                ("after", "1")
            ])
        );
    }

    #[test]
    fn heredoc_edge_cases() {
        // Empty body, a body of one blank line, delimiter needing an exact match.
        assert_eq!(
            ok("a<<X\nX\nb<<X\n\nX\nc<<END\n END\nEND \nEND\n"),
            pairs(&[("a", ""), ("b", ""), ("c", " END\nEND ")])
        );
        // `<<` before `=`: the delimiter is the rest of the line.
        assert_eq!(ok("a<<E=F\nv\nE=F\n"), pairs(&[("a", "v")]));
    }

    #[test]
    fn redefinition_replaces_in_place() {
        assert_eq!(
            ok("a=1\nb=2\na<<EOF\nnew\nEOF\n"),
            pairs(&[("a", "new"), ("b", "2")])
        );
    }

    #[test]
    fn malformed_lines_report_their_number() {
        assert_eq!(
            errs("a=1\njust text\n\n=value\nname<<\n<<EOF\nbody\nEOF\n"),
            vec![
                malformed(2, "just text"),
                malformed(4, "=value"),
                malformed(5, "name<<"),
                malformed(6, "<<EOF"),
            ]
        );
    }

    #[test]
    fn malformed_found_is_truncated() {
        let long = "x".repeat(200);
        let errors = errs(&long);
        let [OutputFileError::Malformed { line: 1, found }] = errors.as_slice() else {
            panic!("expected one Malformed error");
        };
        assert_eq!(found.chars().count(), 60);
        assert!(found.ends_with('…'));
        // Exactly 60 characters are shown whole.
        assert_eq!(errs(&"é".repeat(60)), vec![malformed(1, &"é".repeat(60))]);
    }

    #[test]
    fn bad_names() {
        let bad = |line, name: &str| OutputFileError::BadName {
            line,
            name: name.to_owned(),
        };
        assert_eq!(
            errs("1a=x\nok=1\na b=x\n-x=y\nnäme=z\nname =v\nbad.name<<E\nok=not a def\nE\n"),
            vec![
                bad(1, "1a"),
                bad(3, "a b"),
                bad(4, "-x"),
                bad(5, "näme"),
                bad(6, "name "),
                bad(7, "bad.name"),
            ]
        );
    }

    #[test]
    fn unclosed_heredoc() {
        assert_eq!(
            errs("a=1\nb<<EOF\nx\nEOF \n"),
            vec![OutputFileError::Unclosed {
                line: 2,
                delimiter: "EOF".to_owned()
            }]
        );
    }

    #[test]
    fn all_errors_are_reported() {
        let errors = errs("oops\n9=x\nfine=1\nz<<END\nnever");
        let lines: Vec<_> = errors.iter().map(OutputFileError::line).collect();
        assert_eq!(lines, [Some(1), Some(2), Some(4)]);
    }

    #[test]
    fn messages_say_what_was_expected_and_found() {
        assert_eq!(
            malformed(3, "huh").to_string(),
            "line 3: expected `name=value` or `name<<DELIMITER`, found `huh`"
        );
        assert_eq!(
            errs("2x=1")[0].to_string(),
            "line 1: invalid output name `2x` (letters, digits, `_` and `-`, not starting with a digit)"
        );
        assert_eq!(
            errs("a<<EOF")[0].to_string(),
            "line 1: heredoc `EOF` is never closed"
        );
    }

    #[test]
    fn too_large() {
        let big = "a=".to_owned() + &"x".repeat(MAX_OUTPUT_FILE_BYTES);
        let expected = vec![OutputFileError::TooLarge {
            size: MAX_OUTPUT_FILE_BYTES + 2,
            limit: MAX_OUTPUT_FILE_BYTES,
        }];
        assert_eq!(parse_bytes(big.as_bytes()).unwrap_err(), expected);
        assert_eq!(parse(&big).unwrap_err(), expected);
        assert_eq!(expected[0].line(), None);
        assert_eq!(
            expected[0].to_string(),
            "the output file is 1048578 bytes; the limit is 1048576 bytes"
        );
        // Exactly at the limit is fine.
        let at_limit = "a=".to_owned() + &"x".repeat(MAX_OUTPUT_FILE_BYTES - 2);
        assert_eq!(
            parse_bytes(at_limit.as_bytes()).unwrap()[0].1.len(),
            MAX_OUTPUT_FILE_BYTES - 2
        );
    }

    #[test]
    fn parse_bytes_reads_utf8() {
        assert_eq!(
            parse_bytes("a=é\r\nb<<E\nü\nE\n".as_bytes()).unwrap(),
            pairs(&[("a", "é"), ("b", "ü")])
        );
    }

    #[test]
    fn parse_bytes_reports_non_utf8_lines() {
        let errors = parse_bytes(b"a=1\nb=\xff\xfe\r\nbroken\nc<<E\n\x80\nE\n").unwrap_err();
        assert_eq!(
            errors,
            vec![
                malformed(2, "b=\u{FFFD}\u{FFFD}"),
                malformed(3, "broken"),
                malformed(5, "\u{FFFD}"),
            ]
        );
        // A bad line that is also malformed is reported once.
        assert_eq!(
            parse_bytes(b"x\xff").unwrap_err(),
            vec![malformed(1, "x\u{FFFD}")]
        );
    }
}
