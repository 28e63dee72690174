//! Turns a `run:` template into script text that never contains expression values.
//!
//! Each `${{ expr }}` becomes an environment variable (`CASCADE_EXPR_<n>`) whose value the
//! engine computes at run time, and the script text gets a quoted reference to it. The
//! reference is chosen for the shell context the expression sits in:
//!
//! | context                               | written as              |
//! |---------------------------------------|-------------------------|
//! | unquoted (also inside `$( )`)         | `"${CASCADE_EXPR_1}"`   |
//! | inside `"…"`, unquoted heredoc body   | `${CASCADE_EXPR_1}`     |
//! | inside `'…'`                          | `'"${CASCADE_EXPR_1}"'` |
//!
//! In each the shell performs one parameter expansion inside double quotes: no word
//! splitting, no globbing, no command substitution of the value. Some contexts evaluate
//! an expanded value again, whatever its quoting — arithmetic (`$(( ))`, `(( ))`, `let`)
//! and `[[ ]]` in bash run array subscripts such as `a[$(cmd)]` — and in others the
//! scanner cannot be sure of the quoting (`$'…'`, backticks, quoted heredoc bodies). An
//! expression there is refused, with a hint to pass it through `env:` instead.

use cascade_spec::expr::{Expr, Segment, Template};
use cascade_spec::model::Shell;
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

/// An expression in a place where no quoting keeps its value from being run as code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`${{{{ {expr} }}}}` in `run:` sits inside {context}, where the shell would evaluate its value; pass it through `env:` (e.g. `env: {{ VALUE: \"${{{{ {expr} }}}}\" }}`) and use \"$VALUE\""
)]
pub struct ScriptError {
    pub expr: String,
    pub context: &'static str,
}

/// Where the scanner stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ctx {
    /// Plain script text, or the inside of `$( )` / `( )`.
    Unquoted,
    Double,
    Single,
    /// Until the end of the line.
    Comment,
    /// A body of a heredoc whose delimiter was not quoted: expands like `"…"`.
    HeredocExpand(String),
    /// A body of a heredoc with a quoted delimiter: literal text.
    HeredocLiteral(String),
    /// Contexts where an expression is refused; each ends at its closing text.
    Refuse {
        what: &'static str,
        until: &'static str,
    },
}

/// Rewrites a template; equal expressions share one variable.
pub fn rewrite(template: &Template, shell: Shell) -> Result<Script, ScriptError> {
    let mut scanner = Scanner {
        stack: vec![Ctx::Unquoted],
        pending_heredocs: Vec::new(),
        line: String::new(),
        shell,
    };
    let mut text = String::new();
    let mut bindings: Vec<Binding> = Vec::new();
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => {
                scanner.feed(t);
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
                // A backslash just before the reference would escape its first quote.
                if scanner.escaped() {
                    text.push('\\');
                }
                let reference = match scanner.top() {
                    Ctx::Unquoted | Ctx::Comment => format!("\"${{{var}}}\""),
                    Ctx::Double | Ctx::HeredocExpand(_) => format!("${{{var}}}"),
                    Ctx::Single => format!("'\"${{{var}}}\"'"),
                    Ctx::HeredocLiteral(_) => {
                        return Err(ScriptError {
                            expr: canonical,
                            context: "a heredoc with a quoted delimiter",
                        });
                    }
                    Ctx::Refuse { what, .. } => {
                        return Err(ScriptError {
                            expr: canonical,
                            context: what,
                        });
                    }
                };
                let _ = write!(text, "{reference}");
                // The reference is a complete word part: the scanner's state is unchanged.
                scanner.line.push('x');
            }
        }
    }
    Ok(Script { text, bindings })
}

struct Scanner {
    stack: Vec<Ctx>,
    /// Heredoc delimiters seen on the current line, bodies starting at the next line.
    pending_heredocs: Vec<(String, bool)>,
    /// The current line so far (for heredoc ends, comment and keyword detection).
    line: String,
    shell: Shell,
}

impl Scanner {
    fn top(&self) -> &Ctx {
        self.stack.last().unwrap_or(&Ctx::Unquoted)
    }

    /// Whether the text so far ends in an unpaired backslash (outside single quotes).
    fn escaped(&self) -> bool {
        !matches!(
            self.top(),
            Ctx::Single | Ctx::HeredocLiteral(_) | Ctx::Comment
        ) && self.line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
    }

    fn feed(&mut self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let next2 = chars.get(i + 2).copied();
            let escaped = self.escaped();
            if c == '\n' {
                self.newline();
                i += 1;
                continue;
            }
            self.line.push(c);
            let top = self.top().clone();
            match top {
                Ctx::Single => {
                    if c == '\'' {
                        self.stack.pop();
                    }
                }
                Ctx::Comment | Ctx::HeredocLiteral(_) => {}
                Ctx::Refuse { until, .. } => {
                    if !escaped && self.line.ends_with(until) {
                        self.stack.pop();
                    } else if until == ")" && c == '(' && !escaped {
                        // Nested parentheses inside `$( )`-like refused contexts.
                        self.stack.push(Ctx::Refuse {
                            what: "a nested command",
                            until: ")",
                        });
                    }
                }
                Ctx::Double | Ctx::HeredocExpand(_) => {
                    if escaped {
                    } else if c == '"' && top == Ctx::Double {
                        self.stack.pop();
                    } else if c == '$' && next == Some('(') && next2 == Some('(') {
                        self.stack.push(Ctx::Refuse {
                            what: "shell arithmetic `$(( ))`",
                            until: "))",
                        });
                        self.line.push_str("((");
                        i += 2;
                    } else if c == '$' && next == Some('(') {
                        self.stack.push(Ctx::Unquoted);
                        self.line.push('(');
                        i += 1;
                    } else if c == '`' {
                        self.stack.push(Ctx::Refuse {
                            what: "backquotes",
                            until: "`",
                        });
                    }
                }
                Ctx::Unquoted => self.unquoted(c, next, next2, escaped, &mut i),
            }
            i += 1;
        }
    }

    fn unquoted(
        &mut self,
        c: char,
        next: Option<char>,
        next2: Option<char>,
        escaped: bool,
        i: &mut usize,
    ) {
        if escaped {
            return;
        }
        let before = self.line.chars().rev().nth(1);
        let word_start =
            before.is_none_or(|b| b.is_whitespace() || matches!(b, ';' | '&' | '|' | '(' | ')'));
        match c {
            '\'' => self.stack.push(Ctx::Single),
            '"' => self.stack.push(Ctx::Double),
            '`' => self.stack.push(Ctx::Refuse {
                what: "backquotes",
                until: "`",
            }),
            '#' if word_start => self.stack.push(Ctx::Comment),
            '$' if next == Some('\'') && self.shell == Shell::Bash => {
                self.stack.push(Ctx::Refuse {
                    what: "a `$'…'` string",
                    until: "'",
                });
                self.line.push('\'');
                *i += 1;
            }
            '$' if next == Some('(') && next2 == Some('(') => {
                self.stack.push(Ctx::Refuse {
                    what: "shell arithmetic `$(( ))`",
                    until: "))",
                });
                self.line.push_str("((");
                *i += 2;
            }
            '$' if next == Some('(') => {
                self.stack.push(Ctx::Unquoted);
                self.line.push('(');
                *i += 1;
            }
            '(' if next == Some('(') => {
                self.stack.push(Ctx::Refuse {
                    what: "shell arithmetic `(( ))`",
                    until: "))",
                });
                self.line.push('(');
                *i += 1;
            }
            '(' => self.stack.push(Ctx::Unquoted),
            ')' if self.stack.len() > 1 => {
                self.stack.pop();
            }
            '[' if next == Some('[') && word_start => {
                self.stack.push(Ctx::Refuse {
                    what: "a `[[ ]]` test",
                    until: "]]",
                });
                self.line.push('[');
                *i += 1;
            }
            '<' if next == Some('<') && next2 != Some('<') && before != Some('<') => {
                self.line.push('<');
                *i += 1;
                self.heredoc_start();
            }
            _ => {
                // `let` evaluates its arguments as arithmetic, to the end of the command.
                if c.is_whitespace() && self.line.trim_end().ends_with("let") {
                    let word_begin = self.line.trim_end().len() - 3;
                    let prev = self.line[..word_begin].chars().last();
                    if prev.is_none_or(|p| p.is_whitespace() || matches!(p, ';' | '&' | '|' | '('))
                    {
                        self.stack.push(Ctx::Refuse {
                            what: "`let` arithmetic",
                            until: ";",
                        });
                    }
                }
            }
        }
    }

    /// After `<<`: records the delimiter word (quoted or not); the body starts next line.
    fn heredoc_start(&mut self) {
        self.pending_heredocs.push((String::new(), false));
        self.stack.push(Ctx::Refuse {
            what: "a heredoc delimiter",
            until: "\u{0}",
        });
    }

    fn newline(&mut self) {
        // A pending heredoc delimiter word ends at the end of its line.
        if let Some(Ctx::Refuse {
            what: "a heredoc delimiter",
            ..
        }) = self.stack.last()
        {
            self.stack.pop();
        }
        self.finish_delimiters();
        let line = std::mem::take(&mut self.line);
        // Comments and `let` end with the line; a heredoc body with its delimiter line.
        let ends = match self.top() {
            Ctx::Comment | Ctx::Refuse { until: ";", .. } => true,
            Ctx::HeredocExpand(d) | Ctx::HeredocLiteral(d) => line.trim_start_matches('\t') == d,
            _ => false,
        };
        if ends {
            self.stack.pop();
        }
        // Bodies of heredocs opened on this line start now; pushed in reverse so the
        // first one is on top.
        let pending = std::mem::take(&mut self.pending_heredocs);
        for (delimiter, quoted) in pending.into_iter().rev() {
            if delimiter.is_empty() {
                continue;
            }
            self.stack.push(if quoted {
                Ctx::HeredocLiteral(delimiter)
            } else {
                Ctx::HeredocExpand(delimiter)
            });
        }
    }

    /// Reads the delimiter words of heredocs opened on the current line.
    fn finish_delimiters(&mut self) {
        if self.pending_heredocs.is_empty() {
            return;
        }
        let mut rest = self.line.as_str();
        let mut found = Vec::new();
        while let Some(at) = rest.find("<<") {
            let after = &rest[at + 2..];
            if let Some(here_string) = after.strip_prefix('<') {
                rest = here_string;
                continue;
            }
            let after = after.strip_prefix('-').unwrap_or(after).trim_start();
            let word: String = after
                .chars()
                .take_while(|c| {
                    !c.is_whitespace() && !matches!(c, ';' | '|' | '&' | '<' | '>' | ')')
                })
                .collect();
            let quoted = word.contains(['\'', '"', '\\']);
            let delimiter: String = word
                .chars()
                .filter(|c| !matches!(c, '\'' | '"' | '\\'))
                .collect();
            found.push((delimiter, quoted));
            rest = &after[word.len().min(after.len())..];
        }
        self.pending_heredocs = found;
    }
}

/// Checks every job's `run:` of a pipeline (for `cascade validate`).
pub fn check(pipeline: &cascade_spec::Pipeline) -> Vec<(String, ScriptError)> {
    pipeline
        .jobs
        .values()
        .filter_map(|job| {
            rewrite(&job.run.template, job.shell)
                .err()
                .map(|e| (job.id.to_string(), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_spec::expr::parse_template;

    fn script(src: &str) -> Script {
        rewrite(&parse_template(src).unwrap(), Shell::Sh).unwrap()
    }

    fn refused(src: &str, shell: Shell) -> ScriptError {
        rewrite(&parse_template(src).unwrap(), shell).expect_err(src)
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
    fn comments_do_not_change_the_quoting_of_later_lines() {
        let s = script("# don't do this\nprintf '[%s]' \"${{ item }}\"");
        assert_eq!(
            s.text,
            "# don't do this\nprintf '[%s]' \"${CASCADE_EXPR_1}\""
        );
        // `#` inside a word is not a comment.
        assert_eq!(
            script("echo a#b'${{ item }}'").text,
            "echo a#b''\"${CASCADE_EXPR_1}\"''"
        );
    }

    #[test]
    fn command_substitution_starts_a_fresh_context() {
        let s = script("echo \"$(printf '%s' \"${{ item }}\")\"");
        assert_eq!(s.text, "echo \"$(printf '%s' \"${CASCADE_EXPR_1}\")\"");
        let s = script("x=$(echo ${{ item }})");
        assert_eq!(s.text, "x=$(echo \"${CASCADE_EXPR_1}\")");
    }

    #[test]
    fn heredocs_expand_like_double_quotes_or_are_refused_when_literal() {
        let s = script("cat <<EOF\nvalue: ${{ item }}\nEOF\necho ${{ item }}");
        assert_eq!(
            s.text,
            "cat <<EOF\nvalue: ${CASCADE_EXPR_1}\nEOF\necho \"${CASCADE_EXPR_1}\""
        );
        let e = refused("cat <<'EOF'\nvalue: ${{ item }}\nEOF", Shell::Sh);
        assert_eq!(e.context, "a heredoc with a quoted delimiter");
        // Here-strings are not heredocs.
        assert_eq!(
            script("cat <<< ${{ item }}").text,
            "cat <<< \"${CASCADE_EXPR_1}\""
        );
    }

    #[test]
    fn contexts_that_evaluate_values_are_refused() {
        for (src, context) in [
            ("echo $(( ${{ item }} + 1 ))", "shell arithmetic `$(( ))`"),
            (
                "echo \"$(( ${{ item }} + 1 ))\"",
                "shell arithmetic `$(( ))`",
            ),
            ("(( x = ${{ item }} ))", "shell arithmetic `(( ))`"),
            (
                "if [[ ${{ item }} -gt 3 ]]; then echo big; fi",
                "a `[[ ]]` test",
            ),
            ("let x=${{ item }}", "`let` arithmetic"),
            ("echo `echo ${{ item }}`", "backquotes"),
        ] {
            assert_eq!(refused(src, Shell::Bash).context, context, "{src}");
        }
        assert_eq!(
            refused("echo $'a ${{ item }}'", Shell::Bash).context,
            "a `$'…'` string"
        );
        // The scanner stays in step after a `$'…'` string with an escaped quote.
        let s = rewrite(
            &parse_template("printf '%s' $'\\'' \"${{ item }}\"").unwrap(),
            Shell::Bash,
        )
        .unwrap();
        assert_eq!(s.text, "printf '%s' $'\\'' \"${CASCADE_EXPR_1}\"");
        let message = refused("let x=${{ item }}", Shell::Bash).to_string();
        assert!(message.contains("pass it through `env:`"), "{message}");
        // After the refused part, the script goes on normally.
        assert_eq!(
            script("echo $((1 + 2)) ${{ item }}").text,
            "echo $((1 + 2)) \"${CASCADE_EXPR_1}\""
        );
        assert_eq!(
            script("let x=1\necho ${{ item }}").text,
            "let x=1\necho \"${CASCADE_EXPR_1}\""
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
