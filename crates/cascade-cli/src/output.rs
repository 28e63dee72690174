//! Terminal output: data on stdout, everything else on stderr; miette rendering of
//! diagnostics; colour decided in one place ([`color`]: `--color`, `NO_COLOR`, whether
//! the stream is a terminal); job output made safe to show on a terminal.

use cascade_spec::SpecErrors;
use miette::{GraphicalReportHandler, GraphicalTheme};
use std::io::{IsTerminal, Write};

/// `--output` of commands that print data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Human,
    Json,
}

/// `--output` of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

/// A plain text table with a header row.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Job output made inert for a terminal: every C0 control character but tab, DEL and
/// every C1 control character becomes visible text (`\x1b`, `\x7f`, `\x9b`), so a job
/// cannot set the window title, clear the screen, move the cursor or hide lines from
/// whoever reads its log. `--raw` skips this.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c != '\t' && c.is_control();
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\x{:02x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Writes data to stdout; a closed pipe ends quietly.
pub fn data(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

pub fn json(value: &serde_json::Value) {
    data(&value.to_string());
}

/// A message for the user on stderr.
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

pub fn error(text: &str) {
    note(&format!("error: {text}"));
}

/// `--color`: when output is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    // Plain comments, not docs: documented variants would turn every command's `--help`
    // into the long form. The flag's own doc says what each means.
    // On a terminal, unless `NO_COLOR` is set (or `TERM=dumb`).
    #[default]
    Auto,
    // Always, even into a pipe or a file, and whatever `NO_COLOR` says.
    Always,
    Never,
}

static COLOR: std::sync::OnceLock<ColorChoice> = std::sync::OnceLock::new();

/// Sets `--color` for the whole process (once, at start; later calls change nothing).
pub fn set_color(choice: ColorChoice) {
    let _ = COLOR.set(choice);
}

/// Where text is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The one decision whether text written to `stream` is coloured: `--color`, then
/// `NO_COLOR` and `TERM=dumb`, then whether the stream is a terminal.
pub fn color(stream: Stream) -> bool {
    let choice = COLOR.get().copied().unwrap_or_default();
    let terminal = || match stream {
        Stream::Stdout => std::io::stdout().is_terminal(),
        Stream::Stderr => std::io::stderr().is_terminal(),
    };
    decide(
        choice,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("TERM").as_deref(),
        terminal,
    )
}

/// [`color`] without the process's state: an explicit `--color` wins over `NO_COLOR`
/// (as no-color.org asks), `auto` colours only a terminal.
fn decide(
    choice: ColorChoice,
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    terminal: impl FnOnce() -> bool,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            no_color.is_none_or(std::ffi::OsStr::is_empty)
                && term.is_none_or(|t| t != "dumb")
                && terminal()
        }
    }
}

/// What a piece of text says, and so its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Succeeded: green.
    Good,
    /// Failed: red.
    Bad,
    /// Cancelled, or failed but allowed to: yellow.
    Warn,
    /// Skipped: dim.
    Quiet,
}

impl Tone {
    /// The tone of a task's final state.
    pub fn of(state: cascade_plan::TaskState) -> Option<Self> {
        use cascade_plan::TaskState;
        match state {
            TaskState::Pending | TaskState::Running => None,
            TaskState::Failed => Some(Tone::Bad),
            TaskState::Skipped => Some(Tone::Quiet),
            TaskState::Cancelled => Some(Tone::Warn),
            TaskState::Succeeded => Some(Tone::Good),
        }
    }

    fn sgr(self) -> &'static str {
        match self {
            Tone::Good => "\x1b[32m",
            Tone::Bad => "\x1b[31m",
            Tone::Warn => "\x1b[33m",
            Tone::Quiet => "\x1b[2m",
        }
    }
}

/// `text` in the colour of `tone` if output to `stream` is coloured ([`color`]).
pub fn paint(text: &str, tone: Tone, stream: Stream) -> String {
    if color(stream) {
        format!("{}{text}\x1b[0m", tone.sgr())
    } else {
        text.to_owned()
    }
}

/// Renders every diagnostic of a file with miette (caret, help, code).
pub fn render(errors: &SpecErrors) -> String {
    let theme = if color(Stream::Stderr) {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for report in errors.reports() {
        let _ = handler.render_report(&mut out, &report);
    }
    out
}

/// A duration as every command shows it: `0.42s`, `3.05s`, `1m05s`, `2h03m`.
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.2}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// [`duration`] of a count of milliseconds (as the store and the API keep them).
pub fn duration_ms(ms: u64) -> String {
    duration(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::{ColorChoice, decide, duration, escape_controls};
    use std::ffi::OsStr;
    use std::time::Duration;

    #[test]
    fn colour_is_decided_by_the_flag_then_no_color_then_the_terminal() {
        let tty = || true;
        let pipe = || false;
        let set = Some(OsStr::new("1"));
        let xterm = Some(OsStr::new("xterm"));
        assert!(decide(ColorChoice::Auto, None, xterm, tty));
        assert!(!decide(ColorChoice::Auto, None, xterm, pipe));
        assert!(!decide(ColorChoice::Auto, set, xterm, tty));
        // An empty NO_COLOR is unset; a dumb terminal has no colours.
        assert!(decide(ColorChoice::Auto, Some(OsStr::new("")), xterm, tty));
        assert!(!decide(
            ColorChoice::Auto,
            None,
            Some(OsStr::new("dumb")),
            tty
        ));
        // The flag, given on purpose, wins over the environment and the stream.
        assert!(decide(ColorChoice::Always, set, xterm, pipe));
        assert!(!decide(ColorChoice::Never, None, xterm, tty));
    }

    #[test]
    fn durations_have_one_spelling() {
        assert_eq!(duration(Duration::from_millis(4)), "0.00s");
        assert_eq!(duration(Duration::from_millis(3050)), "3.05s");
        assert_eq!(duration(Duration::from_millis(8810)), "8.81s");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(duration(Duration::from_mins(123)), "2h03m");
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            escape_controls("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
            "\\x1b]0;pwned\\x07\\x1b[2J"
        );
        assert_eq!(
            escape_controls("a\rb\u{8}c\u{7f}d\u{9b}31me\u{0}"),
            "a\\x0db\\x08c\\x7fd\\x9b31me\\x00"
        );
        // Tabs, text and other Unicode stay as they are.
        assert_eq!(escape_controls("a\tb é 🔑 \\x1b"), "a\tb é 🔑 \\x1b");
        assert!(matches!(
            escape_controls("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
    }
}
