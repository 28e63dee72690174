//! The expression language of `if:` and `${{ }}`: lexer, parser, AST with spans,
//! templates (text with embedded expressions), and a pure evaluator.
//!
//! A GitHub Actions subset: literals, references (`needs.<job>.result`,
//! `needs.<job>.outputs.<name>`, `inputs.*`, `event.*`, `matrix.*`, `item`), function
//! calls, `!`, comparisons, `&&`, `||`. Spans are byte ranges into the expression text so
//! the caller can point at the exact token in the file.
//!
//! Expressions come from users, and from webhooks' repositories, so nothing here recurses
//! with the length of the input. Chains of `&&` and `||` are n-ary nodes (`And`, `Or`)
//! built by a loop, so 20,000 terms joined by `||` make one node with 20,000 children and
//! every walk over it is a loop. What does nest — parentheses, `!`, function calls,
//! comparisons of comparisons, and the precedence levels between them — is capped at
//! [`MAX_DEPTH`] levels, checked while parsing, before anything deeper is built; walks
//! (display, visits, evaluation, drop) therefore recurse at most that deep.

use serde_json::Value;
use std::fmt;

/// A byte range in the expression (or template) text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }

    fn to(self, end: Span) -> Span {
        Span::new(
            self.offset,
            (end.offset + end.len).saturating_sub(self.offset),
        )
    }
}

/// A parse error with the span of the offending token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    pub span: Span,
    pub help: Option<String>,
}

impl ExprError {
    fn new(message: impl Into<String>, span: Span) -> Self {
        Self {
            message: message.into(),
            span,
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExprError {}

/// Functions that may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Success,
    Failure,
    Always,
    Cancelled,
    Contains,
    StartsWith,
    EndsWith,
    FromJson,
    ToJson,
}

impl Func {
    const ALL: [Func; 9] = [
        Func::Success,
        Func::Failure,
        Func::Always,
        Func::Cancelled,
        Func::Contains,
        Func::StartsWith,
        Func::EndsWith,
        Func::FromJson,
        Func::ToJson,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Success => "success",
            Func::Failure => "failure",
            Func::Always => "always",
            Func::Cancelled => "cancelled",
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::FromJson => "fromJSON",
            Func::ToJson => "toJSON",
        }
    }

    /// The four functions that read the run's status.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Failure | Func::Always | Func::Cancelled
        )
    }

    fn arity(self) -> usize {
        match self {
            Func::Success | Func::Failure | Func::Always | Func::Cancelled => 0,
            Func::FromJson | Func::ToJson => 1,
            Func::Contains | Func::StartsWith | Func::EndsWith => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

/// What a reference starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Needs,
    Inputs,
    Event,
    Matrix,
    Item,
}

impl Root {
    const NAMES: [&'static str; 5] = ["needs", "inputs", "event", "matrix", "item"];

    fn name(self) -> &'static str {
        match self {
            Root::Needs => "needs",
            Root::Inputs => "inputs",
            Root::Event => "event",
            Root::Matrix => "matrix",
            Root::Item => "item",
        }
    }
}

/// `.name` or `[index]` after a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accessor {
    Field(String),
    Index(usize),
}

/// A reference such as `needs.build.outputs.version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub root: Root,
    pub path: Vec<Accessor>,
    pub span: Span,
}

impl Reference {
    fn field(&self, i: usize) -> Option<&str> {
        match self.path.get(i) {
            Some(Accessor::Field(f)) => Some(f),
            _ => None,
        }
    }

    /// The job of a `needs.<job>…` reference.
    pub fn job(&self) -> Option<&str> {
        (self.root == Root::Needs).then(|| self.field(0)).flatten()
    }

    /// `needs.<job>.result`.
    pub fn is_result(&self) -> bool {
        self.root == Root::Needs && self.field(1) == Some("result")
    }

    /// The output of a `needs.<job>.outputs.<name>` reference.
    pub fn output_name(&self) -> Option<&str> {
        (self.root == Root::Needs && self.field(1) == Some("outputs"))
            .then(|| self.field(2))
            .flatten()
    }

    pub fn input_name(&self) -> Option<&str> {
        (self.root == Root::Inputs).then(|| self.field(0)).flatten()
    }

    pub fn matrix_key(&self) -> Option<&str> {
        (self.root == Root::Matrix).then(|| self.field(0)).flatten()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.root.name())?;
        for a in &self.path {
            match a {
                Accessor::Field(name) if is_ident(name) => write!(f, ".{name}")?,
                Accessor::Field(name) => write!(f, "[{}]", quote(name))?,
                Accessor::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal {
        value: Value,
        span: Span,
    },
    Ref(Reference),
    Call {
        func: Func,
        args: Vec<Expr>,
        span: Span,
    },
    Not {
        expr: Box<Expr>,
        span: Span,
    },
    /// `a && b && …`: two or more terms, evaluated left to right.
    And {
        terms: Vec<Expr>,
        span: Span,
    },
    /// `a || b || …`: two or more terms, evaluated left to right.
    Or {
        terms: Vec<Expr>,
        span: Span,
    },
    /// A comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`); `&&` and `||` are `And` and `Or`.
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
        span: Span,
    },
}

impl Expr {
    pub fn span(&self) -> Span {
        match self {
            Expr::Literal { span, .. }
            | Expr::Call { span, .. }
            | Expr::Not { span, .. }
            | Expr::And { span, .. }
            | Expr::Or { span, .. }
            | Expr::Binary { span, .. } => *span,
            Expr::Ref(r) => r.span,
        }
    }

    /// The operands of a top-level `&&` chain (the expression itself when it is not one).
    pub fn conjuncts(&self) -> &[Expr] {
        match self {
            Expr::And { terms, .. } => terms,
            other => std::slice::from_ref(other),
        }
    }

    /// Pre-order visit of every node.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Literal { .. } | Expr::Ref(_) => {}
            Expr::Call { args, .. } => args.iter().for_each(|a| a.walk(f)),
            Expr::Not { expr, .. } => expr.walk(f),
            Expr::And { terms, .. } | Expr::Or { terms, .. } => {
                for t in terms {
                    t.walk(f);
                }
            }
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(f);
                rhs.walk(f);
            }
        }
    }

    /// Every reference, in source order.
    pub fn references(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        collect_refs(self, &mut out);
        out
    }

    /// Status functions used anywhere in the expression.
    pub fn status_functions(&self) -> Vec<Func> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Call { func, .. } = e
                && func.is_status()
            {
                out.push(*func);
            }
        });
        out
    }
}

fn collect_refs<'a>(e: &'a Expr, out: &mut Vec<&'a Reference>) {
    match e {
        Expr::Literal { .. } => {}
        Expr::Ref(r) => out.push(r),
        Expr::Call { args, .. } => args.iter().for_each(|a| collect_refs(a, out)),
        Expr::Not { expr, .. } => collect_refs(expr, out),
        Expr::And { terms, .. } | Expr::Or { terms, .. } => {
            for t in terms {
                collect_refs(t, out);
            }
        }
        Expr::Binary { lhs, rhs, .. } => {
            collect_refs(lhs, out);
            collect_refs(rhs, out);
        }
    }
}

fn precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Eq | BinOp::Ne => 3,
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => 4,
    }
}

/// How tightly a node binds when printed: a child binding less tightly than its parent
/// gets parentheses.
fn binding(e: &Expr) -> u8 {
    match e {
        Expr::Or { .. } => precedence(BinOp::Or),
        Expr::And { .. } => precedence(BinOp::And),
        Expr::Binary { op, .. } => precedence(*op),
        Expr::Literal { .. } | Expr::Ref(_) | Expr::Call { .. } | Expr::Not { .. } => u8::MAX,
    }
}

/// Writes `e`, in parentheses when it binds less tightly than `min`.
fn operand(f: &mut fmt::Formatter<'_>, e: &Expr, min: u8) -> fmt::Result {
    if binding(e) < min {
        write!(f, "({e})")
    } else {
        write!(f, "{e}")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal { value, .. } => match value {
                Value::String(s) => f.write_str(&quote(s)),
                other => write!(f, "{other}"),
            },
            Expr::Ref(r) => write!(f, "{r}"),
            Expr::Call { func, args, .. } => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Not { expr, .. } => {
                f.write_str("!")?;
                operand(f, expr, u8::MAX)
            }
            Expr::And { terms, .. } | Expr::Or { terms, .. } => {
                let (op, min) = if matches!(self, Expr::And { .. }) {
                    ("&&", precedence(BinOp::And))
                } else {
                    ("||", precedence(BinOp::Or))
                };
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {op} ")?;
                    }
                    // A nested chain of the same operator is printed in parentheses, so
                    // that the text parses back to the same tree.
                    operand(f, t, min + 1)?;
                }
                Ok(())
            }
            Expr::Binary { op, lhs, rhs, .. } => {
                // Left-associative: the right side needs parentheses at equal binding.
                operand(f, lhs, precedence(*op))?;
                write!(f, " {} ", op.symbol())?;
                operand(f, rhs, precedence(*op) + 1)
            }
        }
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Dot,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    Not,
    Op(BinOp),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(_) => "a string".to_owned(),
        Tok::Num(_) => "a number".to_owned(),
        Tok::Dot => "`.`".to_owned(),
        Tok::LBracket => "`[`".to_owned(),
        Tok::RBracket => "`]`".to_owned(),
        Tok::LParen => "`(`".to_owned(),
        Tok::RParen => "`)`".to_owned(),
        Tok::Comma => "`,`".to_owned(),
        Tok::Not => "`!`".to_owned(),
        Tok::Op(op) => format!("`{}`", op.symbol()),
        Tok::End => "the end of the expression".to_owned(),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per token kind reads best as one match"
)]
fn lex(src: &str) -> Result<Vec<(Tok, Span)>, ExprError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'.' => {
                out.push((Tok::Dot, Span::new(i, 1)));
                i += 1;
            }
            b'[' | b']' | b'(' | b')' | b',' => {
                let t = match c {
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    _ => Tok::Comma,
                };
                out.push((t, Span::new(i, 1)));
                i += 1;
            }
            b'!' | b'=' | b'<' | b'>' | b'&' | b'|' => {
                let next = bytes.get(i + 1).copied();
                let (tok, len) = match (c, next) {
                    (b'!', Some(b'=')) => (Tok::Op(BinOp::Ne), 2),
                    (b'!', _) => (Tok::Not, 1),
                    (b'=', Some(b'=')) => (Tok::Op(BinOp::Eq), 2),
                    (b'<', Some(b'=')) => (Tok::Op(BinOp::Le), 2),
                    (b'<', _) => (Tok::Op(BinOp::Lt), 1),
                    (b'>', Some(b'=')) => (Tok::Op(BinOp::Ge), 2),
                    (b'>', _) => (Tok::Op(BinOp::Gt), 1),
                    (b'&', Some(b'&')) => (Tok::Op(BinOp::And), 2),
                    (b'|', Some(b'|')) => (Tok::Op(BinOp::Or), 2),
                    (b'=', _) => {
                        return Err(ExprError::new("unexpected `=`", Span::new(i, 1))
                            .help("compare with `==`"));
                    }
                    (b'&', _) => {
                        return Err(ExprError::new("unexpected `&`", Span::new(i, 1))
                            .help("use `&&` for \"and\""));
                    }
                    _ => {
                        return Err(ExprError::new("unexpected `|`", Span::new(i, 1))
                            .help("use `||` for \"or\""));
                    }
                };
                out.push((tok, Span::new(i, len)));
                i += len;
            }
            b'\'' => {
                let mut value = String::new();
                i += 1;
                let mut closed = false;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            value.push('\'');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        closed = true;
                        break;
                    }
                    let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                    value.push(ch);
                    i += ch.len_utf8();
                }
                if !closed {
                    return Err(ExprError::new(
                        "unterminated string",
                        Span::new(start, src.len() - start),
                    )
                    .help("close the string with `'` (write `''` for a quote inside it)"));
                }
                out.push((Tok::Str(value), Span::new(start, i - start)));
            }
            b'"' => {
                return Err(ExprError::new("strings use single quotes", Span::new(i, 1))
                    .help("write 'text' instead of \"text\""));
            }
            b'0'..=b'9' | b'-' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let text = &src[start..i];
                match text.parse::<f64>() {
                    Ok(n) if text != "-" => out.push((Tok::Num(n), Span::new(start, i - start))),
                    _ => {
                        return Err(ExprError::new(
                            format!("invalid number `{text}`"),
                            Span::new(start, i - start),
                        ));
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                out.push((
                    Tok::Ident(src[start..i].to_owned()),
                    Span::new(start, i - start),
                ));
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
                return Err(ExprError::new(
                    format!("unexpected character `{ch}`"),
                    Span::new(i, ch.len_utf8()),
                ));
            }
        }
    }
    out.push((Tok::End, Span::new(src.len(), 0)));
    Ok(out)
}

// ---------------------------------------------------------------- parser

/// How deeply an expression may nest: parentheses, `!`, function calls, and operators
/// whose operand is another operator (`a == b == c`, `a && (b || c)`) each add a level; a
/// chain of `&&` or `||` adds one level however long it is. Past it the parser stops with
/// a diagnostic, so no walk over an expression ever recurses deeper than this.
pub const MAX_DEPTH: usize = 64;

fn too_deep(span: Span) -> ExprError {
    ExprError::new(
        format!("the expression nests more than {MAX_DEPTH} levels deep"),
        span,
    )
    .help(format!(
        "parentheses, `!`, function calls and operators inside operators count one level each \
         (a chain of `&&` or `||` counts once); at most {MAX_DEPTH} are allowed"
    ))
}

/// Parses one expression.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let tokens = lex(src)?;
    if tokens.len() == 1 {
        return Err(ExprError::new("empty expression", Span::new(0, src.len()))
            .help("write an expression such as `needs.build.result == 'success'`"));
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let (e, _) = p.expr()?;
    let (t, span) = p.peek();
    if *t != Tok::End {
        return Err(ExprError::new(
            format!("expected the end of the expression, found {}", describe(t)),
            span,
        ));
    }
    Ok(e)
}

struct Parser {
    tokens: Vec<(Tok, Span)>,
    pos: usize,
    /// Parentheses and calls open at the current token: the parser's own recursion.
    depth: usize,
}

/// An operand being built, with the height of its tree (a leaf is 1).
type Built = (Expr, usize);

/// Combines `lhs op rhs`; `&&` and `||` take the terms of an operand of the same kind
/// into one node, so that a chain stays one level deep.
fn combine(op: BinOp, (lhs, lh): Built, (rhs, rh): Built, at: Span) -> Result<Built, ExprError> {
    let span = lhs.span().to(rhs.span());
    let and = match op {
        BinOp::And => true,
        BinOp::Or => false,
        _ => {
            let height = lh.max(rh) + 1;
            if height > MAX_DEPTH {
                return Err(too_deep(at));
            }
            return Ok((
                Expr::Binary {
                    op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                    span,
                },
                height,
            ));
        }
    };
    // The left side's vector is reused: a chain grows in place, in linear time.
    let (mut terms, mut height) = match lhs {
        Expr::And { terms, .. } if and => (terms, lh),
        Expr::Or { terms, .. } if !and => (terms, lh),
        other => (vec![other], lh + 1),
    };
    match rhs {
        Expr::And { terms: inner, .. } if and => {
            terms.extend(inner);
            height = height.max(rh);
        }
        Expr::Or { terms: inner, .. } if !and => {
            terms.extend(inner);
            height = height.max(rh);
        }
        other => {
            terms.push(other);
            height = height.max(rh + 1);
        }
    }
    if height > MAX_DEPTH {
        return Err(too_deep(at));
    }
    let e = if and {
        Expr::And { terms, span }
    } else {
        Expr::Or { terms, span }
    };
    Ok((e, height))
}

impl Parser {
    fn peek(&self) -> (&Tok, Span) {
        let (t, s) = &self.tokens[self.pos.min(self.tokens.len() - 1)];
        (t, *s)
    }

    fn bump(&mut self) -> (Tok, Span) {
        let (t, s) = self.tokens[self.pos.min(self.tokens.len() - 1)].clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        (t, s)
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Span, ExprError> {
        let (t, span) = self.bump();
        if &t == want {
            Ok(span)
        } else {
            Err(ExprError::new(
                format!("expected {what}, found {}", describe(&t)),
                span,
            ))
        }
    }

    /// Binary operators by precedence climbing with explicit stacks: a loop, whatever
    /// the number of operators. The operator stack holds strictly rising precedences,
    /// so it never holds more than the four levels.
    fn expr(&mut self) -> Result<Built, ExprError> {
        let mut operands: Vec<Built> = vec![self.unary()?];
        let mut operators: Vec<(BinOp, Span)> = Vec::new();
        loop {
            let (t, span) = self.peek();
            let Tok::Op(op) = *t else { break };
            self.bump();
            // Left-associative: reduce everything at the same or a tighter level first.
            while let Some(&(top, at)) = operators.last()
                && precedence(top) >= precedence(op)
            {
                operators.pop();
                Self::reduce(&mut operands, top, at)?;
            }
            operators.push((op, span));
            operands.push(self.unary()?);
        }
        while let Some((op, at)) = operators.pop() {
            Self::reduce(&mut operands, op, at)?;
        }
        operands
            .pop()
            .ok_or_else(|| ExprError::new("expected a value", self.peek().1))
    }

    fn reduce(operands: &mut Vec<Built>, op: BinOp, at: Span) -> Result<(), ExprError> {
        let (Some(rhs), Some(lhs)) = (operands.pop(), operands.pop()) else {
            return Err(ExprError::new("expected a value", at));
        };
        operands.push(combine(op, lhs, rhs, at)?);
        Ok(())
    }

    /// `!`s are counted in a loop, then applied to the operand.
    fn unary(&mut self) -> Result<Built, ExprError> {
        let mut nots = Vec::new();
        while let (Tok::Not, span) = self.peek() {
            if self.depth + nots.len() >= MAX_DEPTH {
                return Err(too_deep(span));
            }
            nots.push(span);
            self.bump();
        }
        let (mut e, mut height) = self.primary()?;
        for span in nots.into_iter().rev() {
            height += 1;
            if height > MAX_DEPTH {
                return Err(too_deep(span));
            }
            let whole = span.to(e.span());
            e = Expr::Not {
                expr: Box::new(e),
                span: whole,
            };
        }
        Ok((e, height))
    }

    /// Parses what is inside parentheses or a call's argument list, one level deeper.
    fn nested(&mut self, at: Span) -> Result<Built, ExprError> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep(at));
        }
        self.depth += 1;
        let inner = self.expr();
        self.depth -= 1;
        inner
    }

    fn primary(&mut self) -> Result<Built, ExprError> {
        let (t, span) = self.bump();
        let leaf = |e: Expr| Ok((e, 1));
        match t {
            Tok::Str(s) => leaf(Expr::Literal {
                value: Value::String(s),
                span,
            }),
            Tok::Num(n) => leaf(Expr::Literal {
                value: serde_json::Number::from_f64(n).map_or(Value::Null, |n| number_value(&n)),
                span,
            }),
            Tok::LParen => {
                let e = self.nested(span)?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => leaf(Expr::Literal {
                    value: Value::Bool(true),
                    span,
                }),
                "false" => leaf(Expr::Literal {
                    value: Value::Bool(false),
                    span,
                }),
                "null" => leaf(Expr::Literal {
                    value: Value::Null,
                    span,
                }),
                _ if *self.peek().0 == Tok::LParen => self.call(&name, span),
                _ => self.reference(&name, span).map(|e| (e, 1)),
            },
            other => Err(ExprError::new(
                format!("expected a value, found {}", describe(&other)),
                span,
            )),
        }
    }

    fn call(&mut self, name: &str, span: Span) -> Result<Built, ExprError> {
        let Some(func) = Func::ALL.into_iter().find(|f| f.name() == name) else {
            let names: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
            return Err(ExprError::new(format!("unknown function `{name}`"), span)
                .help(suggestion(name, &names, "the functions")));
        };
        self.bump();
        let mut args = Vec::new();
        let mut height = 1;
        if *self.peek().0 != Tok::RParen {
            loop {
                let (arg, h) = self.nested(span)?;
                height = height.max(h + 1);
                args.push(arg);
                if *self.peek().0 == Tok::Comma {
                    self.bump();
                    continue;
                }
                break;
            }
        }
        let close = self.expect(&Tok::RParen, "`,` or `)`")?;
        let whole = span.to(close);
        if height > MAX_DEPTH {
            return Err(too_deep(span));
        }
        if args.len() != func.arity() {
            let n = func.arity();
            return Err(ExprError::new(
                format!(
                    "`{}` takes {n} argument{}, found {}",
                    func.name(),
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
                whole,
            ));
        }
        Ok((
            Expr::Call {
                func,
                args,
                span: whole,
            },
            height,
        ))
    }

    fn reference(&mut self, name: &str, span: Span) -> Result<Expr, ExprError> {
        let root = match name {
            "needs" => Root::Needs,
            "inputs" => Root::Inputs,
            "event" => Root::Event,
            "matrix" => Root::Matrix,
            "item" => Root::Item,
            _ => {
                // `secrets.TOKEN`: the field after the name, for a hint that names it.
                let field = match (self.tokens.get(self.pos), self.tokens.get(self.pos + 1)) {
                    (Some((Tok::Dot, _)), Some((Tok::Ident(f), _))) => Some(f.as_str()),
                    _ => None,
                };
                let help = github_context(name, field)
                    .unwrap_or_else(|| suggestion(name, &Root::NAMES, "the names"));
                return Err(ExprError::new(format!("unknown name `{name}`"), span).help(help));
            }
        };
        let mut path = Vec::new();
        let mut end = span;
        loop {
            match self.peek().0 {
                Tok::Dot => {
                    self.bump();
                    let (t, s) = self.bump();
                    match t {
                        Tok::Ident(f) => path.push(Accessor::Field(f)),
                        other => {
                            return Err(ExprError::new(
                                format!("expected a name after `.`, found {}", describe(&other)),
                                s,
                            ));
                        }
                    }
                    end = s;
                }
                Tok::LBracket => {
                    self.bump();
                    let (t, s) = self.bump();
                    match t {
                        Tok::Str(f) => path.push(Accessor::Field(f)),
                        #[expect(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            reason = "checked to be a small whole number"
                        )]
                        Tok::Num(n) if n >= 0.0 && n.fract() == 0.0 && n < 1e9 => {
                            path.push(Accessor::Index(n as usize));
                        }
                        other => {
                            return Err(ExprError::new(
                                format!(
                                    "expected an index or a quoted name in `[ ]`, found {}",
                                    describe(&other)
                                ),
                                s,
                            ));
                        }
                    }
                    end = self.expect(&Tok::RBracket, "`]`")?;
                }
                _ => break,
            }
        }
        let r = Reference {
            root,
            path,
            span: span.to(end),
        };
        check_shape(&r)?;
        Ok(Expr::Ref(r))
    }
}

fn number_value(n: &serde_json::Number) -> Value {
    // Whole numbers are kept as integers so they print without `.0`.
    match n.as_f64() {
        #[expect(
            clippy::cast_possible_truncation,
            reason = "only whole numbers within i64 range"
        )]
        Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
        _ => Value::Number(n.clone()),
    }
}

fn check_shape(r: &Reference) -> Result<(), ExprError> {
    let field = |i: usize| r.field(i);
    match r.root {
        Root::Needs => {
            let ok = field(0).is_some()
                && match field(1) {
                    Some("result") => r.path.len() == 2,
                    Some("outputs") => field(2).is_some(),
                    _ => false,
                };
            if !ok {
                const SHAPE: &str = "use needs.<job>.result or needs.<job>.outputs.<name>";
                // `needs.build.outptus.x`: the misspelt word, corrected in place.
                let corrected = field(1)
                    .and_then(|word| crate::diagnostic::did_you_mean(word, ["result", "outputs"]))
                    .map(|word| {
                        let mut fixed = r.clone();
                        fixed.path[1] = Accessor::Field(word.to_owned());
                        fixed
                    })
                    .filter(check_shape_ok);
                let help = corrected.map_or_else(
                    || SHAPE.to_owned(),
                    |fixed| format!("did you mean `{fixed}`? ({SHAPE})"),
                );
                return Err(ExprError::new(
                    format!("`{r}` is not a valid `needs` reference"),
                    r.span,
                )
                .help(help));
            }
        }
        Root::Inputs if field(0).is_none() => {
            return Err(ExprError::new("`inputs` needs a name", r.span).help("write inputs.<name>"));
        }
        Root::Matrix if field(0).is_none() => {
            return Err(
                ExprError::new("`matrix` needs an axis name", r.span).help("write matrix.<axis>")
            );
        }
        _ => {}
    }
    Ok(())
}

fn check_shape_ok(r: &Reference) -> bool {
    check_shape(r).is_ok()
}

/// What Cascade does instead of a GitHub Actions context (`secrets.*`, `env.*`,
/// `github.*`, `steps.*`, `vars.*`), which pipeline version 1 does not have (DESIGN §2;
/// `env.*` and `secrets.*` are planned for version 1.1, §2.1).
fn github_context(name: &str, field: Option<&str>) -> Option<String> {
    let var = field.unwrap_or("NAME");
    Some(match name {
        "secrets" => format!(
            "`secrets.*` is not supported in pipeline version 1; declare the secret on the job (`secrets: [{var}]`) and read it in `run:` as \"${var}\": Cascade passes it to the process as an environment variable, masked in every log"
        ),
        "env" => format!(
            "`env.*` is not supported in pipeline version 1; variables from `env:` reach the process as environment variables: read it in `run:` as \"${var}\""
        ),
        "github" => "Cascade has no `github` context; the event that started the run is `event.*` (e.g. `event.ref`, `event.pull_request.title`), and inputs are `inputs.*`".to_owned(),
        "steps" => "`steps` is not supported in pipeline version 1; a job is one `run:` script, and values between jobs are `needs.<job>.outputs.<name>`".to_owned(),
        "vars" => "Cascade has no `vars` context; put the value in `env:` (read it in `run:` as an environment variable) or declare an input under `on.workflow_dispatch.inputs`".to_owned(),
        _ => return None,
    })
}

fn suggestion(found: &str, candidates: &[&str], what: &str) -> String {
    crate::diagnostic::suggest(found, candidates, what)
}

// ---------------------------------------------------------------- templates

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    Expr {
        expr: Expr,
        /// The span of the whole `${{ … }}` in the template.
        span: Span,
        /// Byte offset of the expression text inside the template.
        inner_offset: usize,
    },
}

/// Text with embedded `${{ }}` expressions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// No expressions at all.
    pub fn is_plain(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Text(_)))
    }

    /// The template is exactly one `${{ }}`, with only whitespace around it.
    pub fn single_expr(&self) -> Option<&Expr> {
        let mut found = None;
        for s in &self.segments {
            match s {
                Segment::Text(t) if t.trim().is_empty() => {}
                Segment::Expr { expr, .. } if found.is_none() => found = Some(expr),
                _ => return None,
            }
        }
        found
    }

    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Expr { expr, .. } => Some(expr),
            Segment::Text(_) => None,
        })
    }
}

/// Splits text into literal parts and expressions; reports every bad expression.
pub fn parse_template(src: &str) -> Result<Template, Vec<ExprError>> {
    let (template, errors) = parse_template_partial(src);
    if errors.is_empty() {
        Ok(template)
    } else {
        Err(errors)
    }
}

/// Like [`parse_template`], but keeps the expressions that did parse beside the errors
/// of those that did not, so later checks (scopes, `needs`) still see the good ones.
pub fn parse_template_partial(src: &str) -> (Template, Vec<ExprError>) {
    let mut segments = Vec::new();
    let mut errors = Vec::new();
    let mut rest_start = 0;
    let mut text = String::new();
    while let Some(found) = src[rest_start..].find("${{") {
        let open = rest_start + found;
        text.push_str(&src[rest_start..open]);
        let inner_start = open + 3;
        let Some(close) = find_close(src, inner_start) else {
            let error = if src[inner_start..].contains("}}") {
                // The `}}` is there, but inside a string that never ends.
                let quote = inner_start + src[inner_start..].find('\'').unwrap_or(0);
                ExprError::new("unterminated string", Span::new(quote, src.len() - quote)).help(
                    "close the string with `'` before `}}` (write `''` for a quote inside it)",
                )
            } else {
                ExprError::new("`${{` is never closed", Span::new(open, src.len() - open))
                    .help("end the expression with `}}`")
            };
            errors.push(error);
            rest_start = src.len();
            break;
        };
        if !text.is_empty() {
            segments.push(Segment::Text(std::mem::take(&mut text)));
        }
        let inner = &src[inner_start..close];
        match parse(inner) {
            Ok(expr) => segments.push(Segment::Expr {
                expr,
                span: Span::new(open, close + 2 - open),
                inner_offset: inner_start,
            }),
            Err(mut e) => {
                e.span.offset += inner_start;
                errors.push(e);
            }
        }
        rest_start = close + 2;
    }
    text.push_str(&src[rest_start..]);
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    (Template { segments }, errors)
}

/// The `}}` that closes an expression starting at `from`, skipping quoted strings.
fn find_close(src: &str, from: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = from;
    let mut in_string = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_string = !in_string,
            b'}' if !in_string && bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------- evaluation

/// What an evaluation can see.
pub trait Context {
    /// The value of a reference; `Null` when missing.
    fn lookup(&self, reference: &Reference) -> Value;
    /// The value of a status function.
    fn status(&self, func: Func) -> bool;
}

/// Evaluates an expression (GitHub's loose semantics).
pub fn eval(expr: &Expr, ctx: &dyn Context) -> Value {
    match expr {
        Expr::Literal { value, .. } => value.clone(),
        Expr::Ref(r) => ctx.lookup(r),
        Expr::Not { expr, .. } => Value::Bool(!truthy(&eval(expr, ctx))),
        // The deciding value: the first falsy term of `&&`, the first truthy one of `||`,
        // else the last term.
        Expr::And { terms, .. } | Expr::Or { terms, .. } => {
            let stop = matches!(expr, Expr::Or { .. });
            let mut last = Value::Null;
            for t in terms {
                last = eval(t, ctx);
                if truthy(&last) == stop {
                    break;
                }
            }
            last
        }
        Expr::Binary { op, lhs, rhs, .. } => match op {
            // Never built: `&&` and `||` are `And` and `Or` nodes.
            BinOp::And | BinOp::Or => Value::Null,
            BinOp::Eq => Value::Bool(loose_eq(&eval(lhs, ctx), &eval(rhs, ctx))),
            BinOp::Ne => Value::Bool(!loose_eq(&eval(lhs, ctx), &eval(rhs, ctx))),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (l, r) = (eval(lhs, ctx), eval(rhs, ctx));
                let ordering = match (&l, &r) {
                    (Value::String(a), Value::String(b)) => {
                        Some(a.to_lowercase().cmp(&b.to_lowercase()))
                    }
                    _ => to_number(&l).partial_cmp(&to_number(&r)),
                };
                Value::Bool(ordering.is_some_and(|o| match op {
                    BinOp::Lt => o.is_lt(),
                    BinOp::Le => o.is_le(),
                    BinOp::Gt => o.is_gt(),
                    _ => o.is_ge(),
                }))
            }
        },
        Expr::Call { func, args, .. } => {
            if func.is_status() {
                return Value::Bool(ctx.status(*func));
            }
            let values: Vec<Value> = args.iter().map(|a| eval(a, ctx)).collect();
            let (a, b) = (
                values.first().unwrap_or(&Value::Null),
                values.get(1).unwrap_or(&Value::Null),
            );
            match func {
                Func::Contains => Value::Bool(match a {
                    Value::Array(items) => items.iter().any(|i| loose_eq(i, b)),
                    other => to_text(other)
                        .to_lowercase()
                        .contains(&to_text(b).to_lowercase()),
                }),
                Func::StartsWith => Value::Bool(
                    to_text(a)
                        .to_lowercase()
                        .starts_with(&to_text(b).to_lowercase()),
                ),
                Func::EndsWith => Value::Bool(
                    to_text(a)
                        .to_lowercase()
                        .ends_with(&to_text(b).to_lowercase()),
                ),
                Func::FromJson => serde_json::from_str(&to_text(a)).unwrap_or(Value::Null),
                Func::ToJson => Value::String(serde_json::to_string_pretty(a).unwrap_or_default()),
                Func::Success | Func::Failure | Func::Always | Func::Cancelled => Value::Null,
            }
        }
    }
}

fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
        (Value::Null, Value::Null) => true,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => a == b,
        _ => {
            let (x, y) = (to_number(a), to_number(b));
            !x.is_nan() && !y.is_nan() && (x - y).abs() < f64::EPSILON
        }
    }
}

/// GitHub's truthiness: null, false, 0, "" and NaN are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as text for a process: strings as they are, `null` as "", others as JSON.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Ctx;
    impl Context for Ctx {
        fn lookup(&self, r: &Reference) -> Value {
            match r.to_string().as_str() {
                "needs.build.result" => json!("success"),
                "needs.build.outputs.list" => json!(["a", "b"]),
                "inputs.n" => json!("3"),
                "event.pull_request.title" => json!("Fix It"),
                _ => Value::Null,
            }
        }
        fn status(&self, func: Func) -> bool {
            func == Func::Always || func == Func::Success
        }
    }

    fn ev(src: &str) -> Value {
        eval(&parse(src).unwrap(), &Ctx)
    }

    fn err(src: &str) -> ExprError {
        parse(src).unwrap_err()
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(parse("a_x").unwrap_err().message, "unknown name `a_x`");
        assert_eq!(
            parse("true || false && false").unwrap().to_string(),
            "true || false && false"
        );
        assert_eq!(ev("true || false && false"), json!(true));
        assert_eq!(ev("(true || false) && false"), json!(false));
        assert_eq!(
            parse("(true || false) && false").unwrap().to_string(),
            "(true || false) && false"
        );
        assert_eq!(ev("!false && 1 < 2"), json!(true));
        assert_eq!(ev("1 == 1 == true"), json!(true));
    }

    #[test]
    fn comparisons_are_loose() {
        assert_eq!(ev("needs.build.result == 'SUCCESS'"), json!(true));
        assert_eq!(ev("inputs.n == 3"), json!(true));
        assert_eq!(ev("inputs.n > 2"), json!(true));
        assert_eq!(ev("null == 0"), json!(true));
        assert_eq!(ev("'abc' != 'ABC'"), json!(false));
        assert_eq!(ev("'x' == 1"), json!(false));
        assert_eq!(ev("'b' > 'A'"), json!(true));
    }

    #[test]
    fn and_or_return_the_deciding_value() {
        assert_eq!(ev("'' || 'fallback'"), json!("fallback"));
        assert_eq!(ev("'a' && 'b'"), json!("b"));
        assert_eq!(ev("0 && 'b'"), json!(0));
    }

    #[test]
    fn functions() {
        assert_eq!(ev("contains(needs.build.outputs.list, 'A')"), json!(true));
        assert_eq!(ev("contains(event.pull_request.title, 'fix')"), json!(true));
        assert_eq!(
            ev("startsWith(event.pull_request.title, 'fix')"),
            json!(true)
        );
        assert_eq!(ev("endsWith(event.pull_request.title, 'it')"), json!(true));
        assert_eq!(ev("fromJSON('[1, 2]')"), json!([1, 2]));
        assert_eq!(ev("fromJSON('nope')"), Value::Null);
        assert_eq!(
            ev("toJSON(needs.build.outputs.list)"),
            json!("[\n  \"a\",\n  \"b\"\n]")
        );
        assert_eq!(ev("always() && success()"), json!(true));
        assert_eq!(ev("failure() || cancelled()"), json!(false));
        assert_eq!(
            parse("success() || failure()").unwrap().status_functions(),
            [Func::Success, Func::Failure]
        );
    }

    #[test]
    fn strings_and_numbers() {
        assert_eq!(ev("'it''s'"), json!("it's"));
        assert_eq!(ev("-1.5 < 0"), json!(true));
        assert_eq!(parse("'it''s'").unwrap().to_string(), "'it''s'");
        assert_eq!(parse("3").unwrap().to_string(), "3");
    }

    #[test]
    fn references_and_accessors() {
        let e =
            parse("needs.build-linux.outputs.x[0]['a b'] == event['pull_request'].title").unwrap();
        let refs = e.references();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].job(), Some("build-linux"));
        assert_eq!(refs[0].output_name(), Some("x"));
        assert_eq!(refs[0].to_string(), "needs.build-linux.outputs.x[0]['a b']");
        assert_eq!(refs[1].to_string(), "event.pull_request.title");
        assert_eq!(refs[1].span, Span::new(41, 27));
        assert!(parse("needs.a.result").unwrap().references()[0].is_result());
        assert_eq!(
            parse("inputs.who").unwrap().references()[0].input_name(),
            Some("who")
        );
        assert_eq!(
            parse("matrix.os").unwrap().references()[0].matrix_key(),
            Some("os")
        );
        assert!(parse("item").is_ok());
        assert!(parse("item.name").is_ok());
    }

    #[test]
    fn errors_point_at_the_token() {
        let e = err("need.build.result");
        assert_eq!(
            (e.message.as_str(), e.span, e.help.as_deref()),
            (
                "unknown name `need`",
                Span::new(0, 4),
                Some("did you mean `needs`?")
            )
        );
        let e = err("sucess()");
        assert_eq!(
            (e.message.as_str(), e.help.as_deref()),
            ("unknown function `sucess`", Some("did you mean `success`?"))
        );
        let e = err("contains('a')");
        assert_eq!(
            (e.message.as_str(), e.span),
            ("`contains` takes 2 arguments, found 1", Span::new(0, 13))
        );
        let e = err("'open");
        assert_eq!(
            (e.message.as_str(), e.span),
            ("unterminated string", Span::new(0, 5))
        );
        let e = err("true false");
        assert_eq!(
            (e.message.as_str(), e.span),
            (
                "expected the end of the expression, found `false`",
                Span::new(5, 5)
            )
        );
        assert_eq!(err("   ").message, "empty expression");
        let e = err("needs.build");
        assert_eq!(
            e.help.as_deref(),
            Some("use needs.<job>.result or needs.<job>.outputs.<name>")
        );
        assert_eq!(
            err("needs.build.foo").message,
            "`needs.build.foo` is not a valid `needs` reference"
        );
        assert_eq!(err("1 = 2").span, Span::new(2, 1));
        assert_eq!(err("1.2.3").message, "invalid number `1.2.3`");
        assert_eq!(err("\"x\"").message, "strings use single quotes");
        assert_eq!(
            err("(true").message,
            "expected `)`, found the end of the expression"
        );
        assert_eq!(err("inputs").message, "`inputs` needs a name");
    }

    #[test]
    fn templates() {
        let t = parse_template("echo ${{ item }} and ${{ matrix.os }}!").unwrap();
        assert_eq!(t.segments.len(), 5);
        assert!(!t.is_plain());
        assert!(t.single_expr().is_none());
        let Segment::Expr {
            span, inner_offset, ..
        } = &t.segments[1]
        else {
            panic!()
        };
        assert_eq!((*span, *inner_offset), (Span::new(5, 11), 8));
        assert!(
            parse_template(" ${{ item }} ")
                .unwrap()
                .single_expr()
                .is_some()
        );
        assert!(parse_template("plain").unwrap().is_plain());
        let t = parse_template("${{ '}}' }}").unwrap();
        assert_eq!(t.single_expr().unwrap().to_string(), "'}}'");
        let errors = parse_template("${{ bad }} ok ${{ 'x }} ${{ nope(").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].span, Span::new(4, 3));
        assert_eq!(errors[1].message, "unterminated string");
        assert_eq!(
            parse_template("a ${{ b").unwrap_err()[0].message,
            "`${{` is never closed"
        );
    }

    #[test]
    fn display_round_trips() {
        for src in [
            "needs.a.result == 'success' && !(inputs.x || event.y)",
            "contains(fromJSON('[1]'), 1) || always()",
            "!!true",
            "a_b",
            "item['weird key'][2]",
            "1 < 2 == true",
        ] {
            let Ok(e) = parse(src) else { continue };
            let again = parse(&e.to_string()).unwrap();
            assert_eq!(again.to_string(), e.to_string(), "{src}");
        }
    }

    /// Half of a tokio worker's stack. Parsing 64 levels takes about 430 KiB in a debug
    /// build; a walk that recursed once per term of a 20,000-term chain would overflow it
    /// (and abort the test binary).
    const STACK: usize = 1024 * 1024;

    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(STACK)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_chain_of_20000_terms_is_one_flat_node() {
        on_small_stack(|| {
            let src = (0..20_000)
                .map(|i| format!("inputs.n == {i}"))
                .collect::<Vec<_>>()
                .join(" || ");
            let e = parse(&src).unwrap();
            let Expr::Or { terms, .. } = &e else {
                panic!("not an Or: {e:?}")
            };
            assert_eq!(terms.len(), 20_000);
            assert_eq!(e.references().len(), 20_000);
            assert_eq!(eval(&e, &Ctx), json!(true), "inputs.n is 3");
            assert_eq!(e.to_string(), src);
            let mut nodes = 0;
            e.walk(&mut |_| nodes += 1);
            assert_eq!(nodes, 1 + 20_000 * 3);
            let and = (0..20_000).map(|_| "true").collect::<Vec<_>>().join(" && ");
            assert_eq!(ev(&and), json!(true));
            let mixed = (0..20_000)
                .map(|i| if i % 2 == 0 { "false && true" } else { "false" })
                .collect::<Vec<_>>()
                .join(" || ");
            assert_eq!(ev(&mixed), json!(false));
            drop(e);
        });
    }

    #[test]
    fn nesting_stops_at_the_limit_with_a_diagnostic() {
        on_small_stack(|| {
            let deep = |open: &str, close: &str, n: usize| {
                format!("{}true{}", open.repeat(n), close.repeat(n))
            };
            for src in [
                deep("(", ")", 20_000),
                deep("!", "", 20_000),
                deep("fromJSON(", ")", 20_000),
                deep("(true || ", ")", 20_000),
                deep("(true && !", ")", 20_000),
                (0..20_000).map(|_| "1").collect::<Vec<_>>().join(" == "),
                (0..20_000).map(|_| "1").collect::<Vec<_>>().join(" < "),
            ] {
                let e = err(&src);
                assert_eq!(
                    e.message,
                    format!("the expression nests more than {MAX_DEPTH} levels deep"),
                    "{}",
                    &src[..40]
                );
                assert!(e.help.unwrap().contains("at most 64"));
                assert!(e.span.offset + e.span.len <= src.len());
            }
            // Up to the limit is fine.
            assert!(parse(&deep("(", ")", MAX_DEPTH)).is_ok());
            assert!(parse(&deep("!", "", MAX_DEPTH - 1)).is_ok());
            assert!(parse(&deep("(", ")", MAX_DEPTH + 1)).is_err());
            let templates = format!("echo ${{{{ {} }}}}", deep("(", ")", 20_000));
            assert_eq!(parse_template(&templates).unwrap_err().len(), 1);
        });
    }

    #[test]
    fn chains_flatten_and_print_back_the_same() {
        let e = parse("a_b").err();
        assert!(e.is_some());
        let e = parse("inputs.a || (inputs.b || inputs.c) || inputs.d").unwrap();
        assert!(matches!(&e, Expr::Or { terms, .. } if terms.len() == 4));
        let e = parse("(inputs.a && inputs.b) || inputs.c && inputs.d").unwrap();
        assert_eq!(
            e.to_string(),
            "inputs.a && inputs.b || inputs.c && inputs.d"
        );
        let e = parse("(inputs.a || inputs.b) && inputs.c").unwrap();
        assert_eq!(e.to_string(), "(inputs.a || inputs.b) && inputs.c");
        assert_eq!(e.conjuncts().len(), 2);
        let e = parse("1 == (2 == 3)").unwrap();
        assert_eq!(e.to_string(), "1 == (2 == 3)");
        assert_eq!(parse("!(1 < 2)").unwrap().to_string(), "!(1 < 2)");
        assert_eq!(ev("!(1 < 2)"), json!(false));
        assert_eq!(ev("1 < 2 && 2 < 3 || false"), json!(true));
    }

    #[test]
    fn random_input_never_panics_and_spans_stay_inside() {
        let alphabet: Vec<char> = "abn.[]()'=!&|<> 0123456789,${}-_é✓\"\n".chars().collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = usize::try_from(next() % 24).unwrap();
            let s: String = (0..len)
                .map(|_| alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()])
                .collect();
            for e in parse(&s)
                .err()
                .into_iter()
                .chain(parse_template(&s).err().into_iter().flatten())
            {
                assert!(e.span.offset + e.span.len <= s.len(), "{s:?} {e:?}");
                assert!(s.is_char_boundary(e.span.offset), "{s:?} {e:?}");
            }
        }
    }
}
