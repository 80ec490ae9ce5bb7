//! The audience expression language (issue 12): the conditions of `matches` audience triggers,
//! parsed when a version is uploaded (a syntax error refuses it, naming the column) and
//! evaluated over a customer's attributes and, under `account.`, their account's traits.
//!
//! Written by hand rather than with `evalexpr` or `cel-interpreter`: neither has dotted paths
//! that read missing attributes as `null`, `in [..]` over literals and day arithmetic against
//! a clock we pass in (the manual clock of tests and replay) without bending its own semantics,
//! and the grammar is a screenful:
//!
//! ```text
//! expr     := or
//! or       := and ( "or" and )*
//! and      := unary ( "and" unary )*
//! unary    := "not" unary | compare
//! compare  := operand ( ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) operand
//!                     | "in" "[" ( literal ( "," literal )* )? "]" )?
//! operand  := literal | path | call | "(" expr ")"
//! call     := ( "exists" | "days_until" | "days_since" ) "(" path ")"
//! path     := ident ( "." ident )*          ident := [A-Za-z_][A-Za-z0-9_]*
//! literal  := string | number | "true" | "false" | "null"
//! string   := '"' ( [^"\\] | '\' ["\\/nt] )* '"'
//! ```

use std::fmt;

/// An expression too long to be a condition is refused (it is stored with the spec).
pub const MAX_LEN: usize = 4096;
/// Nesting deeper than this is refused (the parser recurses).
const MAX_DEPTH: usize = 64;

/// A value an expression computes: JSON's scalars (a nested object or array read from an
/// attribute compares equal to nothing but itself and orders with nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// An attribute holding an object or an array, kept as JSON.
    Json(serde_json::Value),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A date function: whole days between the trigger's now and the date in an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFn {
    /// `days_until(attr)`: whole days until the date, rounded up (0 on the day itself,
    /// negative once it has passed).
    Until,
    /// `days_since(attr)`: whole days since the date, rounded down.
    Since,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Value),
    /// A dotted path: `plan`, `address.city`, `account.tier`.
    Path(Vec<String>),
    Exists(Vec<String>),
    Days(DateFn, Vec<String>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Cmp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Value>),
}

impl Expr {
    /// The attribute paths read by date functions: a customer with none of them set needs no
    /// re-evaluation as time passes.
    pub fn date_paths(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Days(_, path) = e {
                out.push(path.as_slice());
            }
        });
        out
    }

    /// Whether the expression reads the customer's account (`account.…`), which costs a read.
    pub fn reads_account(&self) -> bool {
        let mut reads = false;
        self.walk(&mut |e| {
            if let Expr::Path(p) | Expr::Exists(p) | Expr::Days(_, p) = e {
                reads |= p.first().is_some_and(|s| s == "account") && p.len() > 1;
            }
        });
        reads
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::In(e, _) => e.walk(f),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Literal(_) | Expr::Path(_) | Expr::Exists(_) | Expr::Days(..) => {}
        }
    }
}

/// Why an expression does not parse: where (1-based column, in characters) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

/// Parses an audience expression.
pub fn parse(source: &str) -> Result<Expr, ParseError> {
    if source.len() > MAX_LEN {
        return Err(ParseError {
            column: 1,
            message: format!("the expression is longer than {MAX_LEN} bytes"),
        });
    }
    let tokens = lex(source)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
        end: source.chars().count() + 1,
    };
    let expr = parser.or()?;
    match parser.peek() {
        None => Ok(expr),
        Some((tok, col)) => Err(ParseError {
            column: col,
            message: format!("unexpected {tok} after a complete expression"),
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Cmp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Str(s) => write!(f, "string {s:?}"),
            Tok::Num(n) => write!(f, "number {n}"),
            Tok::Op(op) => write!(f, "`{}`", op_text(*op)),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::Dot => f.write_str("`.`"),
        }
    }
}

fn op_text(op: Cmp) -> &'static str {
    match op {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
    }
}

fn lex(source: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| ParseError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two = chars.get(i + 1).copied();
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            ',' => (Tok::Comma, 1),
            '.' if !two.is_some_and(|d| d.is_ascii_digit()) => (Tok::Dot, 1),
            '=' if two == Some('=') => (Tok::Op(Cmp::Eq), 2),
            '!' if two == Some('=') => (Tok::Op(Cmp::Ne), 2),
            '<' if two == Some('=') => (Tok::Op(Cmp::Le), 2),
            '>' if two == Some('=') => (Tok::Op(Cmp::Ge), 2),
            '<' => (Tok::Op(Cmp::Lt), 1),
            '>' => (Tok::Op(Cmp::Gt), 1),
            '=' => return Err(err(col, "`=` is not an operator; compare with `==`".into())),
            '"' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(err(col, "a string is not closed".into())),
                        Some('"') => break,
                        Some('\\') => {
                            let escaped = match chars.get(j + 1) {
                                Some('"') => '"',
                                Some('\\') => '\\',
                                Some('/') => '/',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                _ => {
                                    return Err(err(
                                        j + 1,
                                        "unknown escape (use \\\" \\\\ \\/ \\n or \\t)".into(),
                                    ))
                                }
                            };
                            s.push(escaped);
                            j += 2;
                        }
                        Some(&other) => {
                            s.push(other);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|d| d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E'))
                    || (chars.get(j).is_some_and(|d| matches!(d, '+' | '-'))
                        && matches!(chars[j - 1], 'e' | 'E'))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => (Tok::Num(n), j - i),
                    _ => return Err(err(col, format!("{text:?} is not a number"))),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while chars
                    .get(j)
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
                {
                    j += 1;
                }
                (Tok::Ident(chars[i..j].iter().collect()), j - i)
            }
            other => return Err(err(col, format!("unexpected character {other:?}"))),
        };
        out.push((tok, col));
        i += len;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
    /// The column just past the end, where "expected …, found the end" points.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<(&Tok, usize)> {
        self.tokens.get(self.at).map(|(t, c)| (t, *c))
    }

    fn next(&mut self) -> Option<(Tok, usize)> {
        let t = self.tokens.get(self.at).cloned();
        self.at += usize::from(t.is_some());
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some((Tok::Ident(w), _)) if w == word)
    }

    fn expected(&self, what: &str) -> ParseError {
        match self.peek() {
            Some((tok, column)) => ParseError {
                column,
                message: format!("expected {what}, found {tok}"),
            },
            None => ParseError {
                column: self.end,
                message: format!("expected {what}, found the end of the expression"),
            },
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ParseError> {
        if self.peek().map(|(t, _)| t) == Some(tok) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let column = self.peek().map_or(self.end, |(_, c)| c);
            return Err(ParseError {
                column,
                message: format!("nested deeper than {MAX_DEPTH}"),
            });
        }
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.keyword("not") {
            self.at += 1;
            return self.nested(|p| Ok(Expr::Not(Box::new(p.unary()?))));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand()?;
        match self.peek() {
            Some((Tok::Op(op), _)) => {
                let op = *op;
                self.at += 1;
                let right = self.operand()?;
                Ok(Expr::Compare(op, Box::new(left), Box::new(right)))
            }
            Some((Tok::Ident(w), _)) if w == "in" => {
                self.at += 1;
                self.expect(&Tok::LBracket, "`[` opening the list after `in`")?;
                let mut items = Vec::new();
                if self.peek().map(|(t, _)| t) != Some(&Tok::RBracket) {
                    loop {
                        items.push(self.literal()?);
                        if self.peek().map(|(t, _)| t) == Some(&Tok::Comma) {
                            self.at += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(&Tok::RBracket, "`,` or `]` in the list")?;
                Ok(Expr::In(Box::new(left), items))
            }
            _ => Ok(left),
        }
    }

    fn literal(&mut self) -> Result<Value, ParseError> {
        let value = match self.peek() {
            Some((Tok::Str(s), _)) => Value::String(s.clone()),
            Some((Tok::Num(n), _)) => Value::Number(*n),
            Some((Tok::Ident(w), _)) if w == "true" => Value::Bool(true),
            Some((Tok::Ident(w), _)) if w == "false" => Value::Bool(false),
            Some((Tok::Ident(w), _)) if w == "null" => Value::Null,
            _ => return Err(self.expected("a literal (string, number, true, false or null)")),
        };
        self.at += 1;
        Ok(value)
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            Some((Tok::LParen, _)) => {
                self.at += 1;
                let inner = self.nested(|p| p.or())?;
                self.expect(&Tok::RParen, "`)`")?;
                Ok(inner)
            }
            Some((Tok::Str(_) | Tok::Num(_), _)) => Ok(Expr::Literal(self.literal()?)),
            Some((Tok::Ident(w), column)) => {
                let w = w.clone();
                match w.as_str() {
                    "true" | "false" | "null" => Ok(Expr::Literal(self.literal()?)),
                    "and" | "or" | "not" | "in" => Err(ParseError {
                        column,
                        message: format!("expected a value, found the keyword `{w}`"),
                    }),
                    "exists" | "days_until" | "days_since"
                        if matches!(self.tokens.get(self.at + 1), Some((Tok::LParen, _))) =>
                    {
                        self.at += 2;
                        let path = self.path()?;
                        self.expect(&Tok::RParen, "`)` closing the call")?;
                        Ok(match w.as_str() {
                            "exists" => Expr::Exists(path),
                            "days_until" => Expr::Days(DateFn::Until, path),
                            _ => Expr::Days(DateFn::Since, path),
                        })
                    }
                    _ => Ok(Expr::Path(self.path()?)),
                }
            }
            _ => Err(self.expected("a value (a literal, an attribute, a call or `(`)")),
        }
    }

    fn path(&mut self) -> Result<Vec<String>, ParseError> {
        let mut parts = Vec::new();
        loop {
            match self.next() {
                Some((Tok::Ident(w), _)) => parts.push(w),
                _ => {
                    self.at = self.at.saturating_sub(1);
                    return Err(self.expected("an attribute name"));
                }
            }
            if self.peek().map(|(t, _)| t) == Some(&Tok::Dot) {
                self.at += 1;
            } else {
                return Ok(parts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Box<Expr> {
        Box::new(Expr::Path(p.split('.').map(String::from).collect()))
    }

    #[test]
    fn the_issue_example_parses_with_and_binding_tighter_than_or() {
        let e = parse(r#"plan == "trial" and days_until(trial_ends_at) <= 7 or vip"#).unwrap();
        let Expr::Or(left, right) = e else {
            panic!("or at the top: {e:?}")
        };
        assert_eq!(*right, *path("vip"));
        let Expr::And(a, b) = *left else {
            panic!("and under or")
        };
        assert_eq!(
            *a,
            Expr::Compare(
                Cmp::Eq,
                path("plan"),
                Box::new(Expr::Literal(Value::String("trial".into())))
            )
        );
        assert_eq!(
            *b,
            Expr::Compare(
                Cmp::Le,
                Box::new(Expr::Days(DateFn::Until, vec!["trial_ends_at".into()])),
                Box::new(Expr::Literal(Value::Number(7.0)))
            )
        );
    }

    #[test]
    fn lists_paths_literals_and_not_parse() {
        let e = parse(r#"not account.tier in ["gold", 2, -1.5e1, true, null]"#).unwrap();
        assert_eq!(
            e,
            Expr::Not(Box::new(Expr::In(
                path("account.tier"),
                vec![
                    Value::String("gold".into()),
                    Value::Number(2.0),
                    Value::Number(-15.0),
                    Value::Bool(true),
                    Value::Null
                ]
            )))
        );
        assert!(e.reads_account());
        assert!(parse("x in []").is_ok());
        assert!(parse(r#"exists(a.b) and (x != "a\"b")"#).is_ok());
    }

    #[test]
    fn syntax_errors_name_their_column() {
        let cases = [
            (r#"plan = "trial""#, 6, "`==`"),
            (r#"plan == "trial" and"#, 20, "end of the expression"),
            (r#"plan == "trial"#, 9, "not closed"),
            ("(a == 1", 8, "`)`"),
            ("a == 1 b", 8, "after a complete expression"),
            ("x in [1, ]", 10, "a literal"),
            ("days_until(1)", 12, "attribute name"),
            ("a == #", 6, "unexpected character"),
            ("and", 1, "keyword"),
        ];
        for (source, column, says) in cases {
            let error = parse(source).unwrap_err();
            assert_eq!(error.column, column, "{source}: {error}");
            assert!(error.message.contains(says), "{source}: {error}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let source = format!("{}a{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&source).unwrap_err().message.contains("nested"));
        let nots = format!("{}a", "not ".repeat(500));
        assert!(parse(&nots).is_err());
    }

    #[test]
    fn date_paths_are_the_arguments_of_date_functions() {
        let e = parse("days_since(a) > 1 and days_until(account.renews_at) < 3 and b").unwrap();
        let paths: Vec<String> = e.date_paths().iter().map(|p| p.join(".")).collect();
        assert_eq!(paths, ["a", "account.renews_at"]);
    }
}
