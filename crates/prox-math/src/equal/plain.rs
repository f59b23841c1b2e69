//! sympy's `parse_expr` with its standard transformations, for the answers `parse_latex`
//! rejects: Python expression syntax (`**`, calls, tuples `(2, 4)` and lists `[-2, 7]`), names
//! that are not sympy's become symbols (`f(x)` an undefined function), integers stay exact,
//! `5!` is a factorial.
//!
//! Python's own syntax decides what fails: juxtaposition (`2x`), a backslash, `^` between
//! non-integers, unbalanced brackets. Names of sympy's namespace this does not model (`S`,
//! `N`, `gamma`, ...) fail too, where sympy would give some object the grader cannot use.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::Num;

use super::budget::Budget;
use super::expr::{Constant, Expr, Func, Object, RelOp};
use super::latex::Failure;

/// Nesting beyond this fails (Python's own parser stops at 200 parentheses).
const MAX_DEPTH: usize = 200;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(BigInt),
    Float(f64),
    Imaginary(f64),
    Name(String),
    Op(&'static str),
}

const OPERATORS: [&str; 21] = [
    "**", "//", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",", "<", ">",
    "!", "~", "^",
];

fn lex(text: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ' ' || c == '\t' || c == '\x0c' {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            i = number_end(&chars, i);
            let literal: String = chars[start..i].iter().collect();
            tokens.push(number(&literal)?);
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = OPERATORS.iter().find(|op| rest.starts_with(*op))?;
        i += op.chars().count();
        tokens.push(Tok::Op(op));
    }
    Some(tokens)
}

/// Where the number literal starting at `start` ends: digits, `_`, one `.`, an exponent with
/// its sign, a `j`, or the letters of a `0x`/`0o`/`0b` literal; letters run on into it so that
/// `12abc` is one malformed literal, as Python's tokenizer rejects it.
fn number_end(chars: &[char], start: usize) -> usize {
    let mut i = start;
    while i < chars.len() {
        let c = chars[i];
        let exponent_sign = matches!(c, '+' | '-')
            && i > start
            && matches!(chars[i - 1], 'e' | 'E')
            && !chars[start..i].iter().any(|c| matches!(c, 'x' | 'X'));
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || exponent_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// A Python number literal; `None` for a malformed one (`1__0`, `1.2.3`, `12abc`).
fn number(literal: &str) -> Option<Tok> {
    let (body, imaginary) = match literal.strip_suffix(['j', 'J']) {
        Some(body) => (body, true),
        None => (literal, false),
    };
    let well_grouped = |digits: &str| {
        !digits.starts_with('_')
            && !digits.ends_with('_')
            && !digits.contains("__")
            && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    };
    let lower = body.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            let digits = digits.strip_prefix('_').unwrap_or(digits);
            if imaginary || digits.is_empty() || digits.ends_with('_') || digits.contains("__") {
                return None;
            }
            return BigInt::from_str_radix(&digits.replace('_', ""), radix)
                .ok()
                .map(Tok::Int);
        }
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    if (!int_part.is_empty() && !well_grouped(int_part))
        || frac_part.is_some_and(|f| !f.is_empty() && !well_grouped(f))
        || (int_part.is_empty() && frac_part.is_none_or(str::is_empty))
    {
        return None;
    }
    if let Some(exponent) = exponent {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if digits.is_empty() || !well_grouped(digits) {
            return None;
        }
    }
    let clean = body.replace('_', "");
    if frac_part.is_none() && exponent.is_none() && !imaginary {
        // Python forbids leading zeros in non-zero integers (`007`).
        if int_part.len() > 1
            && int_part.starts_with('0')
            && int_part.chars().any(|c| c != '0' && c != '_')
        {
            return None;
        }
        return BigInt::from_str_radix(&clean, 10).ok().map(Tok::Int);
    }
    let value: f64 = clean.parse().ok()?;
    Some(if imaginary {
        Tok::Imaginary(value)
    } else {
        Tok::Float(value)
    })
}

/// sympy's `parse_expr(text)`.
pub(crate) fn parse_expr(text: &str, budget: &Budget) -> Result<Object, Failure> {
    let text = crate::python::strip(text);
    if text.contains('\n') {
        return Err(Failure::Syntax);
    }
    let tokens = lex(text).ok_or(Failure::Syntax)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        budget,
    };
    let first = parser.comparison()?;
    let object = if parser.eat(",") {
        // A bare tuple: `1, 2`.
        let mut items = vec![first];
        while parser.pos < parser.tokens.len() {
            items.push(parser.comparison()?);
            if !parser.eat(",") {
                break;
            }
        }
        Object::Tuple(items)
    } else {
        first
    };
    if parser.pos != parser.tokens.len() {
        return Err(Failure::Syntax);
    }
    Ok(object)
}

struct Parser<'a> {
    tokens: Vec<Tok>,
    pos: usize,
    depth: usize,
    budget: &'a Budget,
}

impl Parser<'_> {
    fn peek_op(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Tok::Op(op)) => Some(op),
            _ => None,
        }
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.peek_op() == Some(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), Failure> {
        if self.eat(op) {
            Ok(())
        } else {
            Err(Failure::Syntax)
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Failure>) -> Result<T, Failure> {
        self.budget.check()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Failure::Fatal);
        }
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn comparison(&mut self) -> Result<Object, Failure> {
        self.nested(Self::comparison_inner)
    }

    fn comparison_inner(&mut self) -> Result<Object, Failure> {
        let left = self.arith()?;
        let op = match self.peek_op() {
            Some("<") => RelOp::Lt,
            Some("<=") => RelOp::Le,
            Some(">") => RelOp::Gt,
            Some(">=") => RelOp::Ge,
            Some("==") => RelOp::Eq,
            Some("!=") => RelOp::Ne,
            _ => {
                return Ok(match left {
                    Ok(expr) => Object::Expr(expr),
                    Err(object) => object,
                })
            }
        };
        self.pos += 1;
        let right = self.arith()?;
        if matches!(self.peek_op(), Some("<" | "<=" | ">" | ">=" | "==" | "!=")) {
            // A chain is `and` of relations, which sympy cannot take the truth of.
            return Err(Failure::Syntax);
        }
        match (left, right) {
            (Ok(left), Ok(right)) => match op {
                // Python's `==` is structural equality, a Python bool.
                RelOp::Eq | RelOp::Ne => Ok(Object::Bool((left == right) == (op == RelOp::Eq))),
                _ => Ok(Object::Relation(op, left, right)),
            },
            _ => Err(Failure::Syntax),
        }
    }

    /// An arithmetic expression; `Err(object)` for a tuple or list, which only a comparison or
    /// the top level may hold.
    fn arith(&mut self) -> Result<Result<Expr, Object>, Failure> {
        let first = self.term()?;
        let mut terms = vec![];
        let mut current = first;
        loop {
            let negate = match self.peek_op() {
                Some("+") => false,
                Some("-") => true,
                _ => break,
            };
            self.pos += 1;
            let next = self.term()?;
            let (Ok(a), Ok(b)) = (current, next) else {
                return Err(Failure::Syntax);
            };
            terms.push(a);
            current = Ok(if negate { b.neg() } else { b });
        }
        if terms.is_empty() {
            return Ok(current);
        }
        terms.push(current.map_err(|_| Failure::Syntax)?);
        Ok(Ok(Expr::Add(terms)))
    }

    fn term(&mut self) -> Result<Result<Expr, Object>, Failure> {
        let mut current = self.factor()?;
        loop {
            let op = match self.peek_op() {
                Some(op @ ("*" | "/" | "//")) => op,
                Some("%" | "^") => return Err(Failure::Syntax),
                _ => return Ok(current),
            };
            self.pos += 1;
            let next = self.factor()?;
            let (Ok(a), Ok(b)) = (current, next) else {
                return Err(Failure::Syntax);
            };
            current = Ok(match op {
                "*" => Expr::Mul(vec![a, b]),
                "/" => Expr::div(a, b),
                _ => Expr::Call(Func::Floor, vec![Expr::div(a, b)]),
            });
        }
    }

    fn factor(&mut self) -> Result<Result<Expr, Object>, Failure> {
        match self.peek_op() {
            Some("+") => {
                self.pos += 1;
                self.nested(Self::factor)
            }
            Some("-") => {
                self.pos += 1;
                match self.nested(Self::factor)? {
                    Ok(e) => Ok(Ok(e.neg())),
                    Err(_) => Err(Failure::Syntax),
                }
            }
            Some("~") => Err(Failure::Syntax),
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Result<Expr, Object>, Failure> {
        let base = self.postfix()?;
        if !self.eat("**") {
            return Ok(base);
        }
        let exponent = self.nested(Self::factor)?;
        match (base, exponent) {
            (Ok(b), Ok(e)) => Ok(Ok(Expr::Pow(Box::new(b), Box::new(e)))),
            _ => Err(Failure::Syntax),
        }
    }

    fn postfix(&mut self) -> Result<Result<Expr, Object>, Failure> {
        let mut value = self.nested(Self::atom)?;
        while self.peek_op() == Some("!") {
            self.pos += 1;
            if self.peek_op() == Some("!") {
                // `!!` is a double factorial.
                return Err(Failure::Syntax);
            }
            value = Ok(Expr::Call(
                Func::Factorial,
                vec![value.map_err(|_| Failure::Syntax)?],
            ));
        }
        Ok(value)
    }

    fn atom(&mut self) -> Result<Result<Expr, Object>, Failure> {
        let tok = self.tokens.get(self.pos).cloned().ok_or(Failure::Syntax)?;
        self.pos += 1;
        match tok {
            Tok::Int(n) => Ok(Ok(Expr::Rational(BigRational::from_integer(n)))),
            Tok::Float(f) => Ok(Ok(Expr::Float(f))),
            Tok::Imaginary(f) => Ok(Ok(Expr::Mul(vec![
                Expr::Float(f),
                Expr::Constant(Constant::I),
            ]))),
            Tok::Name(name) => {
                if self.eat("(") {
                    let args = self.arguments(")")?;
                    return call(&name, args).map(Ok);
                }
                name_value(&name).map(Ok)
            }
            Tok::Op("(") => {
                let (items, trailing_comma) = self.items(")")?;
                if items.len() == 1 && !trailing_comma {
                    let item = items.into_iter().next().expect("one item");
                    return Ok(match item {
                        Object::Expr(e) => Ok(e),
                        other => Err(other),
                    });
                }
                Ok(Err(Object::Tuple(items)))
            }
            Tok::Op("[") => Ok(Err(Object::List(self.items("]")?.0))),
            _ => Err(Failure::Syntax),
        }
    }

    /// Comma-separated items up to `close`, and whether a comma ended them.
    fn items(&mut self, close: &str) -> Result<(Vec<Object>, bool), Failure> {
        let mut items = Vec::new();
        let mut trailing_comma = false;
        while !self.eat(close) {
            items.push(self.comparison()?);
            trailing_comma = self.eat(",");
            if !trailing_comma {
                self.expect(close)?;
                break;
            }
        }
        Ok((items, trailing_comma))
    }

    fn arguments(&mut self, close: &str) -> Result<Vec<Expr>, Failure> {
        self.items(close)?
            .0
            .into_iter()
            .map(|item| match item {
                Object::Expr(e) => Ok(e),
                _ => Err(Failure::Syntax),
            })
            .collect()
    }
}

/// Names of sympy's namespace that stand for something the grader does not model.
const OPAQUE_NAMES: [&str; 24] = [
    "S", "N", "O", "Q", "C", "gamma", "beta", "zeta", "lambda", "True", "False", "None", "and",
    "or", "not", "in", "is", "if", "else", "for", "Symbol", "Matrix", "Integer", "Float",
];

fn name_value(name: &str) -> Result<Expr, Failure> {
    Ok(match name {
        "pi" => Expr::Constant(Constant::Pi),
        "E" => Expr::Constant(Constant::E),
        "I" => Expr::Constant(Constant::I),
        "oo" => Expr::Constant(Constant::Infinity),
        "zoo" => Expr::Constant(Constant::ComplexInfinity),
        "nan" => Expr::Constant(Constant::NaN),
        _ if OPAQUE_NAMES.contains(&name) || function(name).is_some() => {
            return Err(Failure::Syntax)
        }
        _ => Expr::Symbol(name.to_owned()),
    })
}

fn function(name: &str) -> Option<Func> {
    Some(match name {
        "sin" => Func::Sin,
        "cos" => Func::Cos,
        "tan" => Func::Tan,
        "csc" => Func::Csc,
        "sec" => Func::Sec,
        "cot" => Func::Cot,
        "asin" => Func::Asin,
        "acos" => Func::Acos,
        "atan" => Func::Atan,
        "acsc" => Func::Acsc,
        "asec" => Func::Asec,
        "acot" => Func::Acot,
        "sinh" => Func::Sinh,
        "cosh" => Func::Cosh,
        "tanh" => Func::Tanh,
        "asinh" => Func::Asinh,
        "acosh" => Func::Acosh,
        "atanh" => Func::Atanh,
        "exp" => Func::Exp,
        "log" | "ln" => Func::Log,
        "Abs" | "abs" => Func::Abs,
        "floor" => Func::Floor,
        "ceiling" => Func::Ceiling,
        "factorial" => Func::Factorial,
        "binomial" => Func::Binomial,
        "conjugate" => Func::Conjugate,
        _ => return None,
    })
}

fn call(name: &str, mut args: Vec<Expr>) -> Result<Expr, Failure> {
    let arity_ok = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(Failure::Syntax)
        }
    };
    match name {
        "sqrt" => {
            arity_ok(1..=1)?;
            let half = Expr::Rational(BigRational::new(1.into(), 2.into()));
            Ok(Expr::Pow(Box::new(args.remove(0)), Box::new(half)))
        }
        "root" => {
            arity_ok(2..=2)?;
            let n = args.remove(1);
            let x = args.remove(0);
            let inverse = Expr::Pow(Box::new(n), Box::new(Expr::integer(-1)));
            Ok(Expr::Pow(Box::new(x), Box::new(inverse)))
        }
        "Rational" => {
            arity_ok(2..=2)?;
            let q = args.remove(1);
            Ok(Expr::div(args.remove(0), q))
        }
        _ => match function(name) {
            Some(func) => {
                match func {
                    Func::Log => arity_ok(1..=2)?,
                    Func::Binomial => arity_ok(2..=2)?,
                    _ => arity_ok(1..=1)?,
                }
                Ok(Expr::Call(func, args))
            }
            None if OPAQUE_NAMES.contains(&name) || name_value(name).is_err() => {
                Err(Failure::Syntax)
            }
            None if matches!(name, "pi" | "E" | "I" | "oo" | "zoo" | "nan") => Err(Failure::Syntax),
            None => Ok(Expr::Applied(name.to_owned(), args)),
        },
    }
}
