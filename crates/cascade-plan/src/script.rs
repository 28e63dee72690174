//! Turns a `run:` template into script text that never contains expression values.
//!
//! Each `${{ expr }}` becomes an environment variable (`CASCADE_EXPR_<n>`) whose value the
//! engine computes at run time, and the script text gets a quoted reference to it. The
//! reference is chosen for the shell context the expression sits in:
//!
//! | context                                      | written as              |
//! |----------------------------------------------|-------------------------|
//! | unquoted (also inside `$( )`, `${v:-…}`)     | `"${CASCADE_EXPR_1}"`   |
//! | inside `"…"`, unquoted heredoc body          | `${CASCADE_EXPR_1}`     |
//!
//! In each the shell performs one parameter expansion inside double quotes: no word
//! splitting, no globbing, no command substitution of the value.
//!
//! That is the first level. At the second level a value the shell expanded safely is
//! parsed as code again, by the shell or by another program, whatever its quoting; an
//! expression there is refused (DESIGN §8), with a hint to pass it through `env:`:
//!
//! - text that is code for another program: inside `'…'` (what `sh -c '…'`, `trap '…'`,
//!   `awk '…'` and `python3 -c '…'` take), the string after `-c` of `sh`, `bash`, `dash`,
//!   `zsh`, `ksh`, `su` and `python`, after `-e` of `perl`, `ruby` and `node`, every
//!   argument of `eval`, `trap`, `awk`, `ssh` and `watch`, and a heredoc fed to a shell
//!   or an interpreter (`sh <<EOF`). The command is recognised as the first word, after
//!   assignments and keywords, or after a wrapper such as `sudo`, `env`, `xargs`,
//!   `timeout` or `find -exec`;
//! - bash arithmetic, which expands `a[$(cmd)]` found in a value: `$(( ))`, `(( ))`,
//!   `$[ ]`, `let`, `[[ ]]`, array subscripts (`${a[…]}`, `a[…]=`), substring offsets
//!   (`${v:…}`), `declare`/`typeset`/`local -i` (and `-a`/`-A`) and later assignments to
//!   a variable declared `-i`, and the variable names taken by `test -v`, `unset`, `read`
//!   and `printf -v`. These are refused for `sh` too: `/bin/sh` is bash on many systems;
//! - places where the scanner cannot be sure of the quoting: `$'…'`, backquotes, quoted
//!   heredoc bodies, parameter names.
//!
//! Not recognised: a value piped into an interpreter (`echo "$X" | sh`) or written to a
//! file that is run later. Those are code by the script's own design.

use cascade_spec::expr::{Expr, Segment, Span, Template};
use cascade_spec::model::Shell;
use std::collections::HashSet;
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
    "`${{{{ {expr} }}}}` in `run:` sits inside {context}, where its value would be parsed as code; pass it through `env:` (e.g. `env: {{ VALUE: \"${{{{ {expr} }}}}\" }}`) and use \"$VALUE\""
)]
pub struct ScriptError {
    pub expr: String,
    pub context: &'static str,
    /// The whole `${{ … }}` in the template text.
    pub span: Span,
}

/// Where the scanner stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ctx {
    /// Plain script text, or the inside of `$( )` / `( )`, with the command being read.
    Unquoted(Command),
    Double,
    Single,
    /// Until the end of the line.
    Comment,
    /// A body of a heredoc whose delimiter was not quoted: expands like `"…"`.
    HeredocExpand(String),
    /// A body of a heredoc with a quoted delimiter: literal text.
    HeredocLiteral(String),
    /// A body of a heredoc that a shell or interpreter reads as its program.
    HeredocCode(String, &'static str),
    /// Inside `${ … }`.
    Param(Param),
    /// Contexts where an expression is refused; each ends at its closing text.
    Refuse {
        what: &'static str,
        until: &'static str,
    },
}

/// How far into `${ … }` the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    /// Right after `${`, where `#` and `!` are prefixes.
    Start,
    /// In the parameter's name.
    Name,
    /// In the word after an operator (`:-`, `#`, `/`, …): expands like unquoted text.
    Word,
}

/// What the scanner needs to know of the current context, copied out of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unquoted,
    Double,
    Single,
    Comment,
    HeredocExpand,
    HeredocLiteral,
    HeredocCode(&'static str),
    Param(Param),
    Refuse(&'static str, &'static str),
}

/// Programs whose arguments matter, by the name they are started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Program {
    #[default]
    Other,
    /// Takes its program after an option letter (`sh -c`, `python -c`, `perl -e`), or
    /// on standard input.
    Interpreter {
        /// Short option letters whose next word is a program (`c`, `e`, `E`, `p`, `r`).
        flags: &'static str,
        /// Long options whose next word is a program (`--eval`).
        long: &'static [&'static str],
        name: &'static str,
    },
    /// `declare`, `typeset`, `local`, `readonly`, `export`.
    Declare,
    /// `test` and `[`.
    Test,
    Printf,
}

/// The simple command an unquoted context is reading, word by word.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about the word being read, each set and cleared on its own"
)]
struct Command {
    /// The current word's text outside quotes (enough for names, options, `name=`).
    word: String,
    in_word: bool,
    /// The current word had quotes or expansions (so it is no plain name).
    word_quoted: bool,
    /// The next word may be the command: first word, after assignments and keywords.
    name_position: bool,
    /// After a wrapper (`sudo`, `env`, `xargs`, `-exec`): any later word may be one.
    wrapped: bool,
    program: Program,
    /// `declare -i`: the names declared are integers.
    integer: bool,
    /// The current word is code for another program.
    code_word: Option<&'static str>,
    /// Every later word of the command is code.
    code_rest: Option<&'static str>,
    /// The next word not starting with `-` is code (after `sh -c`).
    code_next: Option<&'static str>,
    /// The next word is a variable name that bash evaluates (after `printf -v`).
    name_next: bool,
}

impl Default for Command {
    fn default() -> Self {
        Self {
            word: String::new(),
            in_word: false,
            word_quoted: false,
            name_position: true,
            wrapped: false,
            program: Program::Other,
            integer: false,
            code_word: None,
            code_rest: None,
            code_next: None,
            name_next: false,
        }
    }
}

/// Words after which the next word is still in command position.
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "exec",
];

/// Commands that run their arguments as another command.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "command", "builtin", "nohup", "nice", "timeout", "xargs", "setsid",
    "stdbuf", "chrt", "ionice", "flock", "chroot", "nsenter", "unshare", "taskset", "runuser",
    "strace", "ltrace", "parallel", "-exec", "-execdir", "-ok",
];

/// What a command name makes of its arguments.
fn program(name: &str) -> (Program, Option<&'static str>) {
    let interpreter = |flags, long, name| (Program::Interpreter { flags, long, name }, None);
    match name {
        "eval" => (Program::Other, Some("the arguments of `eval`")),
        "trap" => (Program::Other, Some("the arguments of `trap`")),
        "awk" | "gawk" | "mawk" | "nawk" => (Program::Other, Some("the arguments of `awk`")),
        "ssh" => (Program::Other, Some("the command given to `ssh`")),
        "watch" => (Program::Other, Some("the command given to `watch`")),
        "unset" => (
            Program::Other,
            Some("the names given to `unset` (bash evaluates their subscripts)"),
        ),
        "read" => (
            Program::Other,
            Some("the names given to `read` (bash evaluates their subscripts)"),
        ),
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "ash" | "mksh" | "busybox" => {
            interpreter("c", &[], "a shell")
        }
        // `source FILE` reads a program; `source /dev/stdin <<EOF` a heredoc.
        "source" | "." => interpreter("", &[], "a shell"),
        "su" => interpreter("c", &["--command"], "`su`"),
        "perl" => interpreter("eE", &[], "an interpreter"),
        "ruby" => interpreter("e", &[], "an interpreter"),
        "node" | "nodejs" | "deno" | "bun" => {
            interpreter("ep", &["--eval", "--print"], "an interpreter")
        }
        "php" => interpreter("r", &[], "`php`"),
        "lua" | "luajit" | "Rscript" => interpreter("e", &[], "`lua`"),
        // Some settings are commands (`core.sshCommand`, `core.pager`, aliases with `!`).
        "git" => interpreter("c", &["--config-env"], "`git -c`"),
        n if n.starts_with("python") || n.starts_with("pypy") => interpreter("c", &[], "Python"),
        "declare" | "typeset" | "local" | "readonly" | "export" => (Program::Declare, None),
        "test" | "[" => (Program::Test, None),
        "printf" => (Program::Printf, None),
        _ => (Program::Other, None),
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable an assignment word (`n=`, `n+=`, `a[1]=`) assigns to.
fn assigned(word: &str) -> Option<&str> {
    let (left, _) = word.split_once('=')?;
    let left = left.strip_suffix('+').unwrap_or(left);
    let name = left.split_once('[').map_or(left, |(n, _)| n);
    is_name(name).then_some(name)
}

impl Command {
    /// A character (or a quote, or an expression) that is part of a word.
    fn start_word(&mut self, first: char) {
        if self.in_word {
            return;
        }
        self.in_word = true;
        self.word_quoted = false;
        if self.name_next {
            self.name_next = false;
            self.code_word = Some("the name given to `printf -v` (bash evaluates its subscript)");
        } else if first != '-'
            && let Some(what) = self.code_next.take()
        {
            self.code_word = Some(what);
        }
    }

    fn end_word(&mut self, integers: &mut HashSet<String>) {
        if !self.in_word {
            return;
        }
        self.in_word = false;
        self.code_word = None;
        let word = std::mem::take(&mut self.word);
        let plain = !self.word_quoted;
        if plain && (word == "{" || word == "}") {
            // A group or a function body (`f() {`): a new command starts.
            *self = Command::default();
            return;
        }
        if self.name_position || self.wrapped {
            if assigned(&word).is_some() || (plain && KEYWORDS.contains(&word.as_str())) {
                return;
            }
            let base = word.rsplit('/').next().unwrap_or(&word);
            if plain && WRAPPERS.contains(&base) {
                self.wrapped = true;
                return;
            }
            let (program, rest) = program(base);
            if rest.is_some() {
                self.code_rest = self.code_rest.or(rest);
            }
            if program != Program::Other || !self.wrapped {
                self.program = program;
            }
            self.name_position = false;
            if program != Program::Other || rest.is_some() {
                return;
            }
        } else if WRAPPERS.contains(&word.as_str()) {
            // `find … -exec sh -c …`
            self.wrapped = true;
            return;
        }
        let option = word.len() > 1 && word.starts_with('-') && !word.starts_with("--");
        match self.program {
            Program::Interpreter { flags, long, name }
                if (option && word[1..].contains(|c: char| flags.contains(c)))
                    || long.contains(&word.as_str()) =>
            {
                self.code_next = Some(match name {
                    "a shell" => "the string given to `sh -c` or `bash -c`",
                    "`su`" => "the command given to `su -c`",
                    "Python" => "the code given to `python -c`",
                    "`git -c`" => "a setting given to `git -c` (some settings are commands)",
                    "`php`" => "the code given to `php -r`",
                    "`lua`" => "the code given to `lua -e` or `Rscript -e`",
                    _ => "the code given to `perl -e`, `ruby -e` or `node -e`",
                });
            }
            Program::Declare if option && word.contains('i') => {
                self.integer = true;
                self.code_rest = Some("`declare -i` (its values are arithmetic)");
            }
            Program::Declare if option && word.contains(['a', 'A']) => {
                self.code_rest = Some("an array declaration (bash evaluates its subscripts)");
            }
            Program::Declare if self.integer => {
                if let Some(name) = assigned(&word).or(is_name(&word).then_some(word.as_str())) {
                    integers.insert(name.to_owned());
                }
            }
            Program::Test if word == "-v" => {
                self.code_rest = Some("`test -v` (bash evaluates the subscript of the name)");
            }
            Program::Printf if word == "-v" => self.name_next = true,
            _ => {}
        }
    }
}

/// Rewrites a template; equal expressions share one variable.
pub fn rewrite(template: &Template, shell: Shell) -> Result<Script, ScriptError> {
    let mut scanner = Scanner {
        stack: vec![Ctx::Unquoted(Command::default())],
        pending_heredocs: Vec::new(),
        line: String::new(),
        integers: HashSet::new(),
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
            Segment::Expr { expr, span, .. } => {
                let canonical = expr.to_string();
                let refuse = |context| ScriptError {
                    expr: canonical.clone(),
                    context,
                    span: *span,
                };
                let kind = scanner.kind();
                if let Some(context) = scanner.second_level(kind) {
                    return Err(refuse(context));
                }
                let reference = |var: &str| match kind {
                    Kind::Unquoted | Kind::Comment | Kind::Param(Param::Word) => {
                        Ok(format!("\"${{{var}}}\""))
                    }
                    Kind::Double | Kind::HeredocExpand => Ok(format!("${{{var}}}")),
                    Kind::Single => {
                        Err("a single-quoted string `'…'` (often code for another program)")
                    }
                    Kind::HeredocLiteral => Err("a heredoc with a quoted delimiter"),
                    Kind::HeredocCode(what) | Kind::Refuse(what, _) => Err(what),
                    Kind::Param(_) => Err("a parameter name `${…}`"),
                };
                let var = if let Some(b) = bindings.iter().find(|b| b.expr.to_string() == canonical)
                {
                    b.var.clone()
                } else {
                    format!("CASCADE_EXPR_{}", bindings.len() + 1)
                };
                let reference = reference(&var).map_err(refuse)?;
                if !bindings.iter().any(|b| b.var == var) {
                    bindings.push(Binding {
                        var,
                        expr: expr.clone(),
                    });
                }
                // A backslash just before the reference would escape its first quote.
                if scanner.escaped() {
                    text.push('\\');
                }
                let _ = write!(text, "{reference}");
                // The reference is a complete word part: the scanner's state is unchanged.
                scanner.line.push('x');
                if let Some(Ctx::Unquoted(cmd)) = scanner.stack.last_mut() {
                    cmd.word.push('x');
                    cmd.word_quoted = true;
                }
            }
        }
    }
    Ok(Script { text, bindings })
}

struct Scanner {
    stack: Vec<Ctx>,
    /// Heredoc delimiters seen on the current line, bodies starting at the next line:
    /// (delimiter, quoted, the program reading it when that is a shell or interpreter).
    pending_heredocs: Vec<(String, bool, Option<&'static str>)>,
    /// The current line so far (for heredoc ends, comment and keyword detection).
    line: String,
    /// Variables declared `declare -i`: assigning to them is arithmetic.
    integers: HashSet<String>,
    shell: Shell,
}

impl Scanner {
    fn kind(&self) -> Kind {
        match self.stack.last() {
            None | Some(Ctx::Unquoted(_)) => Kind::Unquoted,
            Some(Ctx::Double) => Kind::Double,
            Some(Ctx::Single) => Kind::Single,
            Some(Ctx::Comment) => Kind::Comment,
            Some(Ctx::HeredocExpand(_)) => Kind::HeredocExpand,
            Some(Ctx::HeredocLiteral(_)) => Kind::HeredocLiteral,
            Some(Ctx::HeredocCode(_, what)) => Kind::HeredocCode(what),
            Some(Ctx::Param(p)) => Kind::Param(*p),
            Some(Ctx::Refuse { what, until }) => Kind::Refuse(what, until),
        }
    }

    /// Whether an expression here would be code at the second level: some enclosing
    /// command takes this word as code, or assigns it to an integer variable.
    fn second_level(&mut self, kind: Kind) -> Option<&'static str> {
        if kind == Kind::Comment {
            return None;
        }
        if let Some(Ctx::Unquoted(cmd)) = self.stack.last_mut() {
            cmd.start_word('x');
        }
        let mut innermost = true;
        for ctx in self.stack.iter().rev() {
            let Ctx::Unquoted(cmd) = ctx else { continue };
            if let Some(what) = cmd.code_word.or(cmd.code_rest) {
                return Some(what);
            }
            if innermost
                && cmd.in_word
                && assigned(&cmd.word).is_some_and(|n| self.integers.contains(n))
            {
                return Some("an assignment to a variable declared `-i` (its value is arithmetic)");
            }
            innermost = false;
        }
        None
    }

    fn command(&mut self) -> Option<&mut Command> {
        match self.stack.last_mut() {
            Some(Ctx::Unquoted(cmd)) => Some(cmd),
            _ => None,
        }
    }

    /// Whether the text so far ends in an unpaired backslash (outside single quotes).
    fn escaped(&self) -> bool {
        !matches!(
            self.kind(),
            Kind::Single | Kind::HeredocLiteral | Kind::HeredocCode(_) | Kind::Comment
        ) && self.line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
    }

    fn refuse(&mut self, what: &'static str, until: &'static str) {
        self.stack.push(Ctx::Refuse { what, until });
    }

    /// `$` followed by `((`, `(`, `{` or `[`, wherever expansions happen. Returns how
    /// many characters after the `$` it took.
    fn dollar(&mut self, next: Option<char>, next2: Option<char>) -> usize {
        match (next, next2) {
            (Some('('), Some('(')) => {
                self.refuse("shell arithmetic `$(( ))`", "))");
                self.line.push_str("((");
                2
            }
            (Some('('), _) => {
                self.stack.push(Ctx::Unquoted(Command::default()));
                self.line.push('(');
                1
            }
            (Some('{'), _) => {
                self.stack.push(Ctx::Param(Param::Start));
                self.line.push('{');
                1
            }
            (Some('['), _) => {
                self.refuse("shell arithmetic `$[ ]`", "]");
                self.line.push('[');
                1
            }
            _ => 0,
        }
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
                self.newline(escaped);
                i += 1;
                continue;
            }
            self.line.push(c);
            match self.kind() {
                Kind::Single => {
                    if c == '\'' {
                        self.stack.pop();
                    }
                }
                Kind::Comment | Kind::HeredocLiteral | Kind::HeredocCode(_) => {}
                Kind::Refuse(_, until) => {
                    if !escaped && self.line.ends_with(until) {
                        self.stack.pop();
                    } else if !escaped
                        && matches!((until, c), (")" | "))", '(') | ("}", '{') | ("]", '['))
                    {
                        // Nested brackets inside a refused context.
                        let close = match c {
                            '(' => ")",
                            '{' => "}",
                            _ => "]",
                        };
                        self.refuse("a nested expansion", close);
                    }
                }
                Kind::Double | Kind::HeredocExpand => {
                    if escaped {
                    } else if c == '"' && self.kind() == Kind::Double {
                        self.stack.pop();
                    } else if c == '$' {
                        i += self.dollar(next, next2);
                    } else if c == '`' {
                        self.refuse("backquotes", "`");
                    }
                }
                Kind::Param(phase) => self.param(phase, c, next, next2, escaped, &mut i),
                Kind::Unquoted => self.unquoted(c, next, next2, escaped, &mut i),
            }
            i += 1;
        }
    }

    fn param(
        &mut self,
        phase: Param,
        c: char,
        next: Option<char>,
        next2: Option<char>,
        escaped: bool,
        i: &mut usize,
    ) {
        if escaped {
            return;
        }
        let set = |s: &mut Self, p: Param| {
            if let Some(Ctx::Param(top)) = s.stack.last_mut() {
                *top = p;
            }
        };
        match (phase, c) {
            (_, '}') => {
                self.stack.pop();
            }
            (Param::Start, '#' | '!') => set(self, Param::Name),
            (Param::Start | Param::Name, '[') => {
                set(self, Param::Name);
                self.refuse("a bash array subscript `${a[…]}`", "]");
            }
            (Param::Start | Param::Name, ':') => {
                if matches!(next, Some('-' | '=' | '?' | '+')) {
                    set(self, Param::Word);
                    self.line.push(next.unwrap_or_default());
                    *i += 1;
                } else {
                    // `${v:offset:length}`: both are arithmetic. It ends with the `}`.
                    self.stack.pop();
                    self.refuse("a substring offset `${v:offset:length}`", "}");
                }
            }
            (
                Param::Start | Param::Name,
                '-' | '=' | '?' | '+' | '#' | '%' | '/' | '^' | ',' | '@',
            ) => {
                set(self, Param::Word);
            }
            (Param::Start | Param::Name, _) => set(self, Param::Name),
            (Param::Word, '"') => self.stack.push(Ctx::Double),
            (Param::Word, '\'') => self.stack.push(Ctx::Single),
            (Param::Word, '`') => self.refuse("backquotes", "`"),
            (Param::Word, '$') => *i += self.dollar(next, next2),
            (Param::Word, _) => {}
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
            // An escaped character is a literal part of the word.
            if let Some(cmd) = self.command() {
                cmd.start_word(c);
                cmd.word.push(c);
                cmd.word_quoted = true;
            }
            return;
        }
        let before = self.line.chars().rev().nth(1);
        let word_start =
            before.is_none_or(|b| b.is_whitespace() || matches!(b, ';' | '&' | '|' | '(' | ')'));
        if c == '#' && word_start {
            self.stack.push(Ctx::Comment);
            return;
        }
        // Word and command boundaries.
        let mut integers = std::mem::take(&mut self.integers);
        if let Some(cmd) = self.command() {
            match c {
                ' ' | '\t' | '(' | ')' | '<' | '>' => cmd.end_word(&mut integers),
                ';' | '&' | '|' => {
                    cmd.end_word(&mut integers);
                    *cmd = Command::default();
                }
                '\'' | '"' | '`' | '$' => {
                    cmd.start_word(c);
                    cmd.word_quoted = true;
                }
                _ => {
                    cmd.start_word(c);
                    cmd.word.push(c);
                }
            }
        }
        self.integers = integers;
        match c {
            '\'' => self.stack.push(Ctx::Single),
            '"' => self.stack.push(Ctx::Double),
            '`' => self.refuse("backquotes", "`"),
            '$' if next == Some('\'') && self.shell == Shell::Bash => {
                self.refuse("a `$'…'` string", "'");
                self.line.push('\'');
                *i += 1;
            }
            '$' => *i += self.dollar(next, next2),
            '(' if next == Some('(') => {
                self.refuse("shell arithmetic `(( ))`", "))");
                self.line.push('(');
                *i += 1;
            }
            '(' => self.stack.push(Ctx::Unquoted(Command::default())),
            ')' if self.stack.len() > 1 => {
                self.stack.pop();
            }
            '[' if next == Some('[') && word_start => {
                self.refuse("a `[[ ]]` test", "]]");
                self.line.push('[');
                *i += 1;
            }
            // `a[…]`: an array subscript, arithmetic in bash (`a[$i]=1`, `unset a[$i]`).
            '[' if self
                .command()
                .is_some_and(|cmd| !cmd.word_quoted && is_name(cmd.word.trim_end_matches('['))) =>
            {
                self.refuse("a bash array subscript `a[…]`", "]");
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
                        self.refuse("`let` arithmetic", ";");
                    }
                }
            }
        }
    }

    /// After `<<`: records the delimiter word (quoted or not); the body starts next line.
    fn heredoc_start(&mut self) {
        let reader = self.command().and_then(|cmd| match cmd.program {
            Program::Interpreter { .. } if cmd.code_next.is_none() => {
                Some("a heredoc fed to a shell or an interpreter (its body is a program)")
            }
            _ if cmd.code_rest == Some("the command given to `ssh`") => {
                Some("a heredoc fed to `ssh` (its body is a program)")
            }
            _ => None,
        });
        self.pending_heredocs.push((String::new(), false, reader));
        self.refuse("a heredoc delimiter", "\u{0}");
    }

    fn newline(&mut self, escaped: bool) {
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
        let ends = match self.stack.last() {
            Some(Ctx::Comment | Ctx::Refuse { until: ";", .. }) => true,
            Some(Ctx::HeredocExpand(d) | Ctx::HeredocLiteral(d) | Ctx::HeredocCode(d, _)) => {
                line.trim_start_matches('\t') == d
            }
            _ => false,
        };
        if ends {
            self.stack.pop();
        }
        // A newline ends the command, unless escaped (a continuation line).
        let mut integers = std::mem::take(&mut self.integers);
        if let Some(cmd) = self.command() {
            cmd.end_word(&mut integers);
            if !escaped {
                *cmd = Command::default();
            }
        }
        self.integers = integers;
        // Bodies of heredocs opened on this line start now; pushed in reverse so the
        // first one is on top.
        let pending = std::mem::take(&mut self.pending_heredocs);
        for (delimiter, quoted, reader) in pending.into_iter().rev() {
            if delimiter.is_empty() {
                continue;
            }
            self.stack.push(match reader {
                Some(what) => Ctx::HeredocCode(delimiter, what),
                None if quoted => Ctx::HeredocLiteral(delimiter),
                None => Ctx::HeredocExpand(delimiter),
            });
        }
    }

    /// Reads the delimiter words of heredocs opened on the current line.
    fn finish_delimiters(&mut self) {
        if self.pending_heredocs.is_empty() {
            return;
        }
        let readers: Vec<Option<&'static str>> =
            self.pending_heredocs.iter().map(|(_, _, r)| *r).collect();
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
            let reader = readers.get(found.len()).copied().flatten();
            found.push((delimiter, quoted, reader));
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
    #[test]
    fn more_interpreters_and_their_long_options_are_refused() {
        for (src, context) in [
            ("perl -E \"say ${{ inputs.v }}\"", "`perl -e`"),
            ("node -p \"${{ inputs.v }}\"", "`node -e`"),
            ("node --eval \"${{ inputs.v }}\"", "`node -e`"),
            ("php -r \"echo ${{ inputs.v }};\"", "`php -r`"),
            ("lua -e \"print(${{ inputs.v }})\"", "`lua -e`"),
            (
                "git -c core.sshCommand=\"${{ inputs.v }}\" fetch",
                "`git -c`",
            ),
            ("git -c \"core.pager=${{ inputs.v }}\" log", "`git -c`"),
            ("source /dev/stdin <<EOF\n${{ inputs.v }}\nEOF", "heredoc"),
            (". /dev/stdin <<EOF\n${{ inputs.v }}\nEOF", "heredoc"),
        ] {
            let err = refused(src, Shell::Bash);
            assert!(err.context.contains(context), "{src}: {}", err.context);
        }
        // Data after a script file stays data.
        for src in [
            "node build.js \"${{ inputs.v }}\"",
            "php artisan migrate --env=\"${{ inputs.v }}\"",
            "git commit -m \"${{ inputs.v }}\"",
            "source ./env.sh",
        ] {
            assert!(
                rewrite(&parse_template(src).unwrap(), Shell::Bash).is_ok(),
                "{src}"
            );
        }
    }

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
        // Text in single quotes is what other programs take as code (`sh -c '…'`).
        let e = refused("echo 'a ${{ item }} b'", Shell::Sh);
        assert_eq!(
            e.context,
            "a single-quoted string `'…'` (often code for another program)"
        );
        assert_eq!(e.span, Span { offset: 8, len: 11 });
    }

    #[test]
    fn quotes_inside_the_other_kind_do_not_switch_context() {
        assert_eq!(
            script("echo \"it's ${{ item }}\"").text,
            "echo \"it's ${CASCADE_EXPR_1}\""
        );
        assert_eq!(
            refused("echo 'say \"${{ item }}'", Shell::Sh).context,
            "a single-quoted string `'…'` (often code for another program)"
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
            script("echo a#b\"${{ item }}\"").text,
            "echo a#b\"${CASCADE_EXPR_1}\""
        );
        assert_eq!(
            script("echo a #b'${{ item }}'").text,
            "echo a #b'\"${CASCADE_EXPR_1}\"'"
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
    #[expect(clippy::too_many_lines, reason = "one row per context: a table")]
    fn second_level_contexts_are_refused_in_both_shells() {
        for (src, context) in [
            (
                "sh -c \"echo ${{ item }}\"",
                "the string given to `sh -c` or `bash -c`",
            ),
            (
                "bash -ec \"echo ${{ item }}\"",
                "the string given to `sh -c` or `bash -c`",
            ),
            (
                "/bin/bash -c ${{ item }}",
                "the string given to `sh -c` or `bash -c`",
            ),
            (
                "sudo -u root sh -c \"echo ${{ item }}\"",
                "the string given to `sh -c` or `bash -c`",
            ),
            (
                "find . -exec sh -c \"echo ${{ item }}\" \\;",
                "the string given to `sh -c` or `bash -c`",
            ),
            (
                "X=1 timeout 5 bash -c \"$(echo ${{ item }})\"",
                "the string given to `sh -c` or `bash -c`",
            ),
            ("eval \"echo ${{ item }}\"", "the arguments of `eval`"),
            ("eval echo ${{ item }}", "the arguments of `eval`"),
            ("trap \"echo ${{ item }}\" EXIT", "the arguments of `trap`"),
            (
                "python3 -c \"print(${{ item }})\"",
                "the code given to `python -c`",
            ),
            (
                "awk -v x=${{ item }} 'BEGIN { print x }'",
                "the arguments of `awk`",
            ),
            ("ssh host \"ls ${{ item }}\"", "the command given to `ssh`"),
            (
                "su -c \"ls ${{ item }}\" nobody",
                "the command given to `su -c`",
            ),
            (
                "perl -e \"print ${{ item }}\"",
                "the code given to `perl -e`, `ruby -e` or `node -e`",
            ),
            (
                "echo \"${a[${{ item }}]}\"",
                "a bash array subscript `${a[…]}`",
            ),
            (
                "echo ${s:${{ item }}:1}",
                "a substring offset `${v:offset:length}`",
            ),
            (
                "echo \"${s:1:${{ item }}}\"",
                "a substring offset `${v:offset:length}`",
            ),
            (
                "declare -i n=${{ item }}",
                "`declare -i` (its values are arithmetic)",
            ),
            (
                "f() { local -i n=\"${{ item }}\"; }",
                "`declare -i` (its values are arithmetic)",
            ),
            (
                "declare -i n\nn=\"${{ item }}\"",
                "an assignment to a variable declared `-i` (its value is arithmetic)",
            ),
            (
                "declare -A m=([${{ item }}]=1)",
                "an array declaration (bash evaluates its subscripts)",
            ),
            ("echo $[ ${{ item }} + 1 ]", "shell arithmetic `$[ ]`"),
            (
                "test -v ${{ item }}",
                "`test -v` (bash evaluates the subscript of the name)",
            ),
            (
                "[ -v \"${{ item }}\" ]",
                "`test -v` (bash evaluates the subscript of the name)",
            ),
            ("arr[${{ item }}]=1", "a bash array subscript `a[…]`"),
            ("arr[\"${{ item }}\"]=1", "a bash array subscript `a[…]`"),
            (
                "unset \"${{ item }}\"",
                "the names given to `unset` (bash evaluates their subscripts)",
            ),
            (
                "read \"${{ item }}\" <<< x",
                "the names given to `read` (bash evaluates their subscripts)",
            ),
            (
                "printf -v \"${{ item }}\" x",
                "the name given to `printf -v` (bash evaluates its subscript)",
            ),
            (
                "sh <<EOF\necho ${{ item }}\nEOF",
                "a heredoc fed to a shell or an interpreter (its body is a program)",
            ),
            ("echo ${${{ item }}}", "a parameter name `${…}`"),
        ] {
            for shell in [Shell::Sh, Shell::Bash] {
                assert_eq!(refused(src, shell).context, context, "{src}");
            }
        }
    }

    #[test]
    fn first_level_contexts_stay_allowed() {
        for (src, text) in [
            (
                "sh -c 'echo \"$1\"' sh ${{ item }}",
                "sh -c 'echo \"$1\"' sh \"${CASCADE_EXPR_1}\"",
            ),
            (
                "python3 -c 'import sys; print(sys.argv[1])' \"${{ item }}\"",
                "python3 -c 'import sys; print(sys.argv[1])' \"${CASCADE_EXPR_1}\"",
            ),
            ("echo ${x:-${{ item }}}", "echo ${x:-\"${CASCADE_EXPR_1}\"}"),
            (
                "echo \"${x:-${{ item }}}\"",
                "echo \"${x:-\"${CASCADE_EXPR_1}\"}\"",
            ),
            ("echo ${#x} ${{ item }}", "echo ${#x} \"${CASCADE_EXPR_1}\""),
            (
                "echo \"${a[1]}\" ${{ item }}",
                "echo \"${a[1]}\" \"${CASCADE_EXPR_1}\"",
            ),
            (
                "echo eval; echo ${{ item }}",
                "echo eval; echo \"${CASCADE_EXPR_1}\"",
            ),
            (
                "sh -c 'exit 0'\necho ${{ item }}",
                "sh -c 'exit 0'\necho \"${CASCADE_EXPR_1}\"",
            ),
            (
                "declare -i n=1; echo ${{ item }}",
                "declare -i n=1; echo \"${CASCADE_EXPR_1}\"",
            ),
            ("declare x=${{ item }}", "declare x=\"${CASCADE_EXPR_1}\""),
            ("[ \"${{ item }}\" = x ]", "[ \"${CASCADE_EXPR_1}\" = x ]"),
            (
                "printf '%s' ${{ item }}",
                "printf '%s' \"${CASCADE_EXPR_1}\"",
            ),
            (
                "cat <<EOF | wc -c\n${{ item }}\nEOF",
                "cat <<EOF | wc -c\n${CASCADE_EXPR_1}\nEOF",
            ),
            (
                "case ${{ item }} in *) ;; esac",
                "case \"${CASCADE_EXPR_1}\" in *) ;; esac",
            ),
        ] {
            for shell in [Shell::Sh, Shell::Bash] {
                let s = rewrite(&parse_template(src).unwrap(), shell).expect(src);
                assert_eq!(s.text, text, "{src}");
            }
        }
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
