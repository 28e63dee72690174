//! Turns a `run:` template into script text that never contains expression values.
//!
//! Each `${{ expr }}` becomes an environment variable (`CASCADE_EXPR_<n>`) whose value the
//! engine computes at run time, and the script text gets a quoted reference to it. The
//! reference is chosen for the shell quoting context the expression sits in, so the
//! script reads naturally and the value is never parsed by the shell:
//!
//! | context            | written as                 |
//! |--------------------|----------------------------|
//! | unquoted           | `"${CASCADE_EXPR_1}"`      |
//! | inside `"…"`       | `${CASCADE_EXPR_1}`        |
//! | inside `'…'`       | `'"${CASCADE_EXPR_1}"'`    |
//!
//! In every case the shell performs one parameter expansion inside double quotes: no word
//! splitting, no globbing, no command substitution of the value.

use cascade_spec::expr::{Expr, Segment, Template};
use std::fmt::Write as _;

/// A script with its expression bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The text handed to the shell.
    pub text: String,
    /// Environment variables to set from expressions before the script starts.
    pub bindings: Vec<Binding>,
}

/// One `${{ }}` of the script: the variable that carries its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub var: String,
    pub expr: Expr,
}

/// Where the scanner stands in shell quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Rewrites a template; equal expressions share one variable.
pub fn rewrite(template: &Template) -> Script {
    let mut text = String::new();
    let mut bindings: Vec<Binding> = Vec::new();
    let mut quote = Quote::None;
    let mut escaped = false;
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => {
                for c in t.chars() {
                    (quote, escaped) = step(quote, escaped, c);
                }
                text.push_str(t);
            }
            Segment::Expr { expr, .. } => {
                let canonical = expr.to_string();
                let var = if let Some(b) = bindings.iter().find(|b| b.expr.to_string() == canonical)
                {
                    b.var.clone()
                } else {
                    let var = format!("CASCADE_EXPR_{}", bindings.len() + 1);
                    bindings.push(Binding {
                        var: var.clone(),
                        expr: expr.clone(),
                    });
                    var
                };
                // A backslash just before the expression would escape our quote; the
                // reference is appended after it, so neutralise it by doubling.
                if escaped {
                    text.push('\\');
                    escaped = false;
                }
                let _ = match quote {
                    Quote::None => write!(text, "\"${{{var}}}\""),
                    Quote::Double => write!(text, "${{{var}}}"),
                    Quote::Single => write!(text, "'\"${{{var}}}\"'"),
                };
            }
        }
    }
    Script { text, bindings }
}

fn step(quote: Quote, escaped: bool, c: char) -> (Quote, bool) {
    match quote {
        Quote::Single => (
            if c == '\'' {
                Quote::None
            } else {
                Quote::Single
            },
            false,
        ),
        _ if escaped => (quote, false),
        Quote::None => match c {
            '\\' => (Quote::None, true),
            '\'' => (Quote::Single, false),
            '"' => (Quote::Double, false),
            _ => (Quote::None, false),
        },
        Quote::Double => match c {
            '\\' => (Quote::Double, true),
            '"' => (Quote::None, false),
            _ => (Quote::Double, false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_spec::expr::parse_template;

    fn script(src: &str) -> Script {
        rewrite(&parse_template(src).unwrap())
    }

    #[test]
    fn unquoted_double_and_single_contexts() {
        assert_eq!(
            script("echo ${{ item }}").text,
            "echo \"${CASCADE_EXPR_1}\""
        );
        assert_eq!(
            script("echo \"a ${{ item }} b\"").text,
            "echo \"a ${CASCADE_EXPR_1} b\""
        );
        assert_eq!(
            script("echo 'a ${{ item }} b'").text,
            "echo 'a '\"${CASCADE_EXPR_1}\"' b'"
        );
    }

    #[test]
    fn quotes_inside_the_other_kind_do_not_switch_context() {
        assert_eq!(
            script("echo \"it's ${{ item }}\"").text,
            "echo \"it's ${CASCADE_EXPR_1}\""
        );
        assert_eq!(
            script("echo 'say \"${{ item }}'").text,
            "echo 'say \"'\"${CASCADE_EXPR_1}\"''"
        );
        assert_eq!(
            script("echo \\\"${{ item }}").text,
            "echo \\\"\"${CASCADE_EXPR_1}\""
        );
    }

    #[test]
    fn a_trailing_backslash_cannot_escape_the_reference() {
        assert_eq!(
            script("echo \\${{ item }}").text,
            "echo \\\\\"${CASCADE_EXPR_1}\""
        );
    }

    #[test]
    fn equal_expressions_share_a_variable() {
        let s = script("${{ item }} ${{ matrix.os }} ${{item}}");
        assert_eq!(s.bindings.len(), 2);
        assert_eq!(
            s.text,
            "\"${CASCADE_EXPR_1}\" \"${CASCADE_EXPR_2}\" \"${CASCADE_EXPR_1}\""
        );
    }

    #[test]
    fn no_expression_text_survives() {
        let s = script("echo ${{ event.pull_request.title }} && rm -rf ${{ inputs.dir }}");
        assert!(!s.text.contains("${{"));
        assert!(!s.text.contains("pull_request"));
    }
}
