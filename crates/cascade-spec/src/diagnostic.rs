//! Diagnostics: what a user reads when a pipeline file is wrong.
//!
//! Validation never stops at the first problem: it collects [`Diagnostic`]s and the caller
//! gets all of them in a [`SpecErrors`], which renders through miette (a caret under the
//! span, a help line, a stable code) or as JSON with line and column.

use crate::source::Span;
use miette::{LabeledSpan, NamedSource, SourceCode};
use std::fmt;
use std::sync::Arc;

/// The kind of a problem; its stable code is `cascade::spec::<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    TooLarge,
    NotUtf8,
    Syntax,
    Empty,
    WrongType,
    UnknownField,
    MissingField,
    DuplicateKey,
    InvalidJobId,
    UnknownNeed,
    SelfDependency,
    Cycle,
    DuplicateNeed,
    BadCron,
    BadTimezone,
    BadDuration,
    BadExpression,
    NotInNeeds,
    UnknownOutput,
    UnknownMatrixKey,
    ItemOutsideForEach,
    UnknownInput,
    StatusOutsideIf,
    NotAList,
    BadValue,
    BadName,
    TooDeep,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TooLarge => "cascade::spec::too_large",
            Code::NotUtf8 => "cascade::spec::not_utf8",
            Code::Syntax => "cascade::spec::syntax",
            Code::Empty => "cascade::spec::empty",
            Code::WrongType => "cascade::spec::wrong_type",
            Code::UnknownField => "cascade::spec::unknown_field",
            Code::MissingField => "cascade::spec::missing_field",
            Code::DuplicateKey => "cascade::spec::duplicate_key",
            Code::InvalidJobId => "cascade::spec::invalid_job_id",
            Code::UnknownNeed => "cascade::spec::unknown_need",
            Code::SelfDependency => "cascade::spec::self_dependency",
            Code::Cycle => "cascade::spec::cycle",
            Code::DuplicateNeed => "cascade::spec::duplicate_need",
            Code::BadCron => "cascade::spec::bad_cron",
            Code::BadTimezone => "cascade::spec::bad_timezone",
            Code::BadDuration => "cascade::spec::bad_duration",
            Code::BadExpression => "cascade::spec::bad_expression",
            Code::NotInNeeds => "cascade::spec::not_in_needs",
            Code::UnknownOutput => "cascade::spec::unknown_output",
            Code::UnknownMatrixKey => "cascade::spec::unknown_matrix_key",
            Code::ItemOutsideForEach => "cascade::spec::item_outside_for_each",
            Code::UnknownInput => "cascade::spec::unknown_input",
            Code::StatusOutsideIf => "cascade::spec::status_outside_if",
            Code::NotAList => "cascade::spec::not_a_list",
            Code::BadValue => "cascade::spec::bad_value",
            Code::BadName => "cascade::spec::bad_name",
            Code::TooDeep => "cascade::spec::too_deep",
        }
    }
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
    /// Text under the caret.
    pub label: String,
    pub help: Option<String>,
    /// Further places worth pointing at (e.g. where a duplicate key was first defined).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn new(
        code: Code,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    #[must_use]
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// A 1-based line and column (in characters) of a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LineColumn {
    pub line: usize,
    pub column: usize,
}

impl LineColumn {
    pub fn of(text: &str, offset: usize) -> Self {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

/// The byte offset of a 1-based line and character column.
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (index, l) in text.split_inclusive('\n').enumerate() {
        if index + 1 == line {
            return offset
                + l.char_indices()
                    .nth(column.saturating_sub(1))
                    .map_or(l.len(), |(i, _)| i);
        }
        offset += l.len();
    }
    text.len()
}

pub(crate) fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Every problem found in one file, with the file's text so they can be shown.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    pub name: String,
    pub source: Arc<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecErrors {
    /// Each problem as a renderable miette diagnostic.
    pub fn reports(&self) -> impl Iterator<Item = Report<'_>> {
        self.diagnostics.iter().map(move |d| Report {
            diagnostic: d,
            quoted: [d.span]
                .iter()
                .chain(d.related.iter().map(|(span, _)| span))
                .all(|span| line_fits(&self.source, *span)),
            at: LineColumn::of(&self.source, d.span.offset),
            name: &self.name,
            source: NamedSource::new(self.name.clone(), Arc::clone(&self.source)),
        })
    }

    pub fn line_column(&self, diagnostic: &Diagnostic) -> LineColumn {
        LineColumn::of(&self.source, diagnostic.span.offset)
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            let at = self.line_column(d);
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}:{}:{}: {}", self.name, at.line, at.column, d.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Lines longer than this are not quoted under a diagnostic. miette pads a label with its
/// column as a format width, which panics past 65,535; a line that long (a 20,000-term
/// `if:`) is unreadable anyway, so the message names the place instead.
pub const MAX_QUOTED_LINE: usize = 10_000;

/// Whether the lines a span touches are short enough to quote.
fn line_fits(text: &str, span: Span) -> bool {
    let start = floor_char_boundary(text, span.offset.min(text.len()));
    let end = floor_char_boundary(text, (span.offset + span.len).min(text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    // Each line between is checked, not only the first and the last.
    text[line_start..line_end]
        .split('\n')
        .all(|line| line.len() <= MAX_QUOTED_LINE)
}

/// One diagnostic together with its file, as miette renders it.
#[derive(Debug)]
pub struct Report<'a> {
    diagnostic: &'a Diagnostic,
    /// The labelled lines can be quoted (see [`MAX_QUOTED_LINE`]).
    quoted: bool,
    at: LineColumn,
    name: &'a str,
    source: NamedSource<Arc<String>>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)?;
        if !self.quoted {
            write!(
                f,
                " (at {}:{}:{}; the line is too long to quote)",
                self.name, self.at.line, self.at.column
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code.as_str()))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.quoted.then_some(&self.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if !self.quoted {
            return None;
        }
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.diagnostic.label.clone()),
            self.diagnostic.span,
        );
        let related = self
            .diagnostic
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

/// "did you mean `x`?" for a misspelt name, if one of `candidates` is close.
pub fn did_you_mean<'a>(
    found: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(found, c)))
        .filter(|(c, score)| *score > 0.8 || strsim::levenshtein(found, c) <= 2 && found.len() > 2)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// A help line: "did you mean `x`?" when one is close, else the list of what is allowed.
pub fn suggest(found: &str, candidates: &[&str], what: &str) -> String {
    match did_you_mean(found, candidates.iter().copied()) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => format!("there are no {what}"),
        None => format!(
            "expected one of {what}: {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
