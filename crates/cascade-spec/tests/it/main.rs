//! Integration tests of the spec crate: diagnostics of the broken-file corpus, the
//! examples, hostile inputs, and random inputs that must never panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    clippy::format_push_string,
    reason = "test helpers: a panic is the failure report"
)]

mod diagnostics;
mod examples;
mod hostile;
mod random;
mod schemas;

use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Renders all diagnostics of an invalid file as a user sees them (without color).
pub fn render(errors: &cascade_spec::SpecErrors) -> String {
    use miette::{GraphicalReportHandler, GraphicalTheme};
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for d in &errors.diagnostics {
        let at = errors.line_column(d);
        out.push_str(&format!(
            "{}:{}: {} [{}]\n",
            at.line,
            at.column,
            d.message,
            d.code.as_str()
        ));
    }
    out.push('\n');
    for report in errors.reports() {
        handler.render_report(&mut out, &report).unwrap();
    }
    out
}
