//! How a command ends: [`Outcome`], the one table of exit codes (documented in `main.rs`
//! and README.md, and tested against both), and [`CliError`], the error a command returns
//! with `?` when it cannot do what it was asked. `main` prints a `CliError` once — its
//! message, its cause chain without repeats, and what to do next — and exits with its code.

use std::fmt::Write as _;

/// How a command ended, one variant per row of the exit code table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the run succeeded, the files are valid, the data was printed.
    Success,
    /// A job or run failed, a file given (pipeline, DAG, cascade.toml, secrets) is
    /// invalid, or the server refused the request or could not be reached.
    Failure,
    /// The command cannot start as given: bad flags or values, an unreadable file, a
    /// missing configuration (kubeconfig), an event nobody listens to.
    Usage,
    /// A bug or a broken environment (cannot start the runtime, the database fails).
    Internal,
    /// What was named does not exist: a file, run, DAG, job, worker or token.
    NotFound,
    /// Cancelled: by Ctrl-C, or the run followed was cancelled.
    Cancelled,
}

impl Outcome {
    /// Every outcome, in the order of the table.
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Usage,
        Outcome::Internal,
        Outcome::NotFound,
        Outcome::Cancelled,
    ];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage => 2,
            Outcome::Internal => 3,
            Outcome::NotFound => 4,
            Outcome::Cancelled => 130,
        }
    }

    /// The word of the table for it.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Usage => "usage",
            Outcome::Internal => "internal",
            Outcome::NotFound => "not found",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The outcome a finished run maps to.
    pub fn of_run(outcome: cascade_plan::RunOutcome) -> Self {
        match outcome {
            cascade_plan::RunOutcome::Succeeded => Outcome::Success,
            cascade_plan::RunOutcome::Failed => Outcome::Failure,
            cascade_plan::RunOutcome::Cancelled => Outcome::Cancelled,
        }
    }
}

impl From<Outcome> for std::process::ExitCode {
    fn from(outcome: Outcome) -> Self {
        std::process::ExitCode::from(outcome.code())
    }
}

/// Why a command did not succeed: the exit code, and what the user is told (nothing when
/// it was already shown, as rendered diagnostics are).
#[derive(Debug)]
pub struct CliError {
    pub outcome: Outcome,
    message: Option<String>,
    hint: Option<String>,
}

/// What commands return: how they ended, or why they could not do it.
pub type CliResult<T = Outcome> = Result<T, CliError>;

impl CliError {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        CliError {
            outcome,
            message: Some(message.into()),
            hint: None,
        }
    }

    /// Exit 1: invalid input, a refusal, a failure (see [`Outcome::Failure`]).
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Outcome::Failure, message)
    }

    /// Exit 2: the command cannot start as given.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Outcome::Usage, message)
    }

    /// Exit 3: a bug or a broken environment.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Outcome::Internal, message)
    }

    /// Exit 4: what was named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Outcome::NotFound, message)
    }

    /// The outcome, its explanation already printed (diagnostics with carets).
    pub fn reported(outcome: Outcome) -> Self {
        CliError {
            outcome,
            message: None,
            hint: None,
        }
    }

    /// `message` with the causes of `error` that it does not already say.
    pub fn caused(outcome: Outcome, error: &(dyn std::error::Error + 'static)) -> Self {
        Self::new(outcome, chain(error))
    }

    /// What to do next, printed after the message as `hint: …`.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message and hint as printed on stderr (empty when already reported).
    pub fn text(&self) -> String {
        let mut text = String::new();
        if let Some(message) = &self.message {
            let _ = write!(text, "error: {message}");
        }
        if let Some(hint) = &self.hint {
            let _ = write!(text, "\nhint: {hint}");
        }
        text
    }
}

/// Anything else that fails is internal: a bug or a broken environment. Its whole cause
/// chain is kept, each cause once.
impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(error: E) -> Self {
        let error: anyhow::Error = error.into();
        CliError::internal(chain(error.as_ref()))
    }
}

/// An error and its causes as one line, `a: b: c`, leaving out a cause whose text is
/// already there (many errors repeat their source in their own message).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            let _ = write!(text, ": {said}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{CliError, Outcome, chain};

    /// The exit code table of README.md and of main.rs's doc comment, as this type has it.
    #[test]
    fn exit_codes_are_documented_as_they_are() {
        for (name, text) in [
            ("README.md", include_str!("../../../README.md")),
            ("main.rs", include_str!("main.rs")),
        ] {
            let rows: Vec<(u8, String)> = text
                .lines()
                .map(|l| l.trim_start_matches("//!").trim())
                .filter_map(|l| {
                    let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                    let code = cells.first()?.parse().ok()?;
                    Some((code, (*cells.get(1)?).to_owned()))
                })
                .collect();
            let expected: Vec<(u8, String)> = Outcome::ALL
                .iter()
                .map(|o| (o.code(), o.word().to_owned()))
                .collect();
            assert_eq!(rows, expected, "the exit code table of {name}");
        }
    }

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = Outcome::ALL.iter().map(|o| o.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Outcome::ALL.len());
    }

    /// An error that says its source in its own message, as kube's do.
    #[derive(Debug)]
    struct Repeats(Inner);

    #[derive(Debug)]
    struct Inner(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "outer: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner went wrong")
        }
    }

    impl std::error::Error for Inner {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_chain_says_each_cause_once() {
        let error = Repeats(Inner(std::io::Error::other("disk")));
        assert_eq!(chain(&error), "outer: inner went wrong: disk");
        let cli = CliError::from(anyhow::Error::new(error).context("cannot do it"));
        assert_eq!(cli.outcome, Outcome::Internal);
        assert_eq!(
            cli.text(),
            "error: cannot do it: outer: inner went wrong: disk"
        );
        let hinted = CliError::usage("no kubeconfig").hint("set KUBECONFIG");
        assert_eq!(hinted.text(), "error: no kubeconfig\nhint: set KUBECONFIG");
        assert_eq!(CliError::reported(Outcome::Failure).text(), "");
    }
}
