//! sympy's `parse_latex` (sympy 1.12, its ANTLR grammar `LaTeX.g4`): the tokens, the grammar
//! and the conversion to sympy objects, with the quirks that decide grades.
//!
//! - The start rule has no `EOF`: a leading expression is parsed and the rest ignored (`1,-2`
//!   is `1`, `4210_{5}` is `4210`, `(+5)(2` is `5`). ANTLR takes a loop's exit when its
//!   continuation cannot be parsed; here every loop tries its continuation and backs out on a
//!   syntax error.
//! - A token the lexer cannot read (`$`, `%`, `\\`, a lone `&`) fails the whole parse as soon as
//!   the parser looks at it, as sympy's error listener raises.
//! - Juxtaposition multiplies (`2x`, `137\frac{1}{2}`); a lone `x` between two symbol-free
//!   factors is a times sign (`2x3` is 6); `x(…)` is a function call.
//! - `\pi`, `e`, `i` are plain symbols; only `\infty` is a constant. Digits group with commas
//!   only in threes (`10,080` is 10080, `1,2` is 1).
//! - Relations are evaluated as sympy builds them: `8-4=4` is `True`, `x=x` is `True`.
//!
//! Derivatives, integrals, sums, products, limits and bra-kets are not built; a text that uses
//! them is treated as one `parse_latex` fails on. An evaluation bar (`f|_{x=a}`) is read as the
//! closing bar of an absolute value (`|x|^{2}`), the common case.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Num, Zero};

use super::budget::{Budget, OutOfTime};
use super::expr::{eval, Expr, Func, Object, Point, RelOp, Value};

/// Nested constructs beyond this depth fail, as sympy's recursive ANTLR parser runs out of
/// Python stack at about the same nesting (100–150 levels).
const MAX_DEPTH: usize = 200;

/// Why a text is not a sympy object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The grammar does not match where it must; a loop may back out of it.
    Syntax,
    /// The whole parse fails: an unreadable token, nesting too deep, or a construct not built.
    Fatal,
    Timeout,
}

impl From<OutOfTime> for Failure {
    fn from(_: OutOfTime) -> Failure {
        Failure::Timeout
    }
}

type Parse<T> = Result<T, Failure>;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Add,
    Sub,
    Mul,
    Div,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBraceLiteral,
    RBraceLiteral,
    LBracket,
    RBracket,
    Bar,
    RBar,
    LBar,
    LAngle,
    RAngle,
    /// Integrals, sums, products, limits: recognised, never built.
    Unsupported,
    LimApproach,
    Func(NormalFunc),
    LFloor,
    RFloor,
    LCeil,
    RCeil,
    Sqrt,
    Overline,
    Times,
    Cdot,
    CmdDiv,
    Frac,
    Binom,
    Mathit,
    Underscore,
    Caret,
    Colon,
    /// `dx`, `d\alpha`: the differential's variable name.
    Differential(String),
    Letter(char),
    Digit(char),
    Equal,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Bang,
    Quotes(usize),
    /// `\alpha`: the name without its backslash.
    Symbol(String),
    Comma,
    Dot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NormalFunc {
    Exp,
    Log,
    Lg,
    Ln,
    Trig(Func),
}

/// The commands the lexer knows by name; every other `\letters` is a SYMBOL. `None` marks
/// the ones the lexer skips.
fn command(name: &str) -> Option<Option<Tok>> {
    use NormalFunc::Trig;
    let tok = match name {
        "thinspace" | "medspace" | "thickspace" | "quad" | "qquad" | "negthinspace"
        | "negmedspace" | "negthickspace" | "left" | "right" | "vrule" | "vcenter" | "vbox"
        | "vskip" | "vspace" | "hfil" => return Some(None),
        "langle" => Tok::LAngle,
        "rangle" => Tok::RAngle,
        "lim" | "int" | "sum" | "prod" => Tok::Unsupported,
        "to" | "rightarrow" | "Rightarrow" | "longrightarrow" | "Longrightarrow" => {
            Tok::LimApproach
        }
        "exp" => Tok::Func(NormalFunc::Exp),
        "log" => Tok::Func(NormalFunc::Log),
        "lg" => Tok::Func(NormalFunc::Lg),
        "ln" => Tok::Func(NormalFunc::Ln),
        "sin" => Tok::Func(Trig(Func::Sin)),
        "cos" => Tok::Func(Trig(Func::Cos)),
        "tan" => Tok::Func(Trig(Func::Tan)),
        "csc" => Tok::Func(Trig(Func::Csc)),
        "sec" => Tok::Func(Trig(Func::Sec)),
        "cot" => Tok::Func(Trig(Func::Cot)),
        "arcsin" => Tok::Func(Trig(Func::Asin)),
        "arccos" => Tok::Func(Trig(Func::Acos)),
        "arctan" => Tok::Func(Trig(Func::Atan)),
        "arccsc" => Tok::Func(Trig(Func::Acsc)),
        "arcsec" => Tok::Func(Trig(Func::Asec)),
        "arccot" => Tok::Func(Trig(Func::Acot)),
        "sinh" => Tok::Func(Trig(Func::Sinh)),
        "cosh" => Tok::Func(Trig(Func::Cosh)),
        "tanh" => Tok::Func(Trig(Func::Tanh)),
        "arsinh" => Tok::Func(Trig(Func::Asinh)),
        "arcosh" => Tok::Func(Trig(Func::Acosh)),
        "artanh" => Tok::Func(Trig(Func::Atanh)),
        "lfloor" => Tok::LFloor,
        "rfloor" => Tok::RFloor,
        "lceil" => Tok::LCeil,
        "rceil" => Tok::RCeil,
        "sqrt" => Tok::Sqrt,
        "overline" => Tok::Overline,
        "times" => Tok::Times,
        "cdot" => Tok::Cdot,
        "div" => Tok::CmdDiv,
        "frac" | "dfrac" | "tfrac" => Tok::Frac,
        "binom" | "dbinom" | "tbinom" => Tok::Binom,
        "mathit" => Tok::Mathit,
        "neq" => Tok::Neq,
        "leq" | "le" | "leqq" | "leqslant" => Tok::Lte,
        "geq" | "ge" | "geqq" | "geqslant" => Tok::Gte,
        _ => return None,
    };
    Some(Some(tok))
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// The tokens of `text` up to the first character the lexer cannot read, and whether there is
/// one (the parser fails if it looks that far).
fn lex(text: &str) -> (Vec<Tok>, bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let letters_from = |start: usize| {
        let mut end = start;
        while end < chars.len() && chars[end].is_ascii_alphabetic() {
            end += 1;
        }
        end
    };
    while i < chars.len() {
        let c = chars[i];
        let tok = match c {
            c if is_ws(c) => {
                i += 1;
                continue;
            }
            '\\' => {
                let end = letters_from(i + 1);
                if end > i + 1 {
                    let name: String = chars[i + 1..end].iter().collect();
                    let next = chars.get(end).copied();
                    i = end;
                    if name == "right" && next == Some('|') {
                        i += 1;
                        Tok::RBar
                    } else if name == "left" && next == Some('|') {
                        i += 1;
                        Tok::LBar
                    } else {
                        match command(&name) {
                            Some(Some(tok)) => tok,
                            Some(None) => continue,
                            None => Tok::Symbol(name),
                        }
                    }
                } else {
                    match chars.get(i + 1) {
                        Some(',' | ':' | ';' | '!' | '*' | '-' | '.' | '/' | '"' | '(' | '=') => {
                            i += 2;
                            continue;
                        }
                        Some('{') => {
                            i += 2;
                            Tok::LBraceLiteral
                        }
                        Some('}') => {
                            i += 2;
                            Tok::RBraceLiteral
                        }
                        _ => return (tokens, true),
                    }
                }
            }
            'd' => {
                let mut j = i + 1;
                while j < chars.len() && is_ws(chars[j]) {
                    j += 1;
                }
                match chars.get(j) {
                    Some(l) if l.is_ascii_alphabetic() => {
                        i = j + 1;
                        Tok::Differential(l.to_string())
                    }
                    Some('\\') if letters_from(j + 1) > j + 1 => {
                        let end = letters_from(j + 1);
                        let name: String = chars[j + 1..end].iter().collect();
                        i = end;
                        Tok::Differential(name)
                    }
                    _ => {
                        i += 1;
                        Tok::Letter('d')
                    }
                }
            }
            '&' => {
                let mut j = i + 1;
                while j < chars.len() && is_ws(chars[j]) {
                    j += 1;
                }
                if chars.get(j) == Some(&'=') {
                    i = j + 1;
                    Tok::Equal
                } else {
                    return (tokens, true);
                }
            }
            '=' => {
                let mut j = i + 1;
                while j < chars.len() && is_ws(chars[j]) {
                    j += 1;
                }
                i = if chars.get(j) == Some(&'&') {
                    j + 1
                } else {
                    i + 1
                };
                Tok::Equal
            }
            '\'' => {
                let mut j = i;
                while j < chars.len() && chars[j] == '\'' {
                    j += 1;
                }
                let count = j - i;
                i = j;
                Tok::Quotes(count)
            }
            _ => {
                let tok = match c {
                    '+' => Tok::Add,
                    '-' => Tok::Sub,
                    '*' => Tok::Mul,
                    '/' => Tok::Div,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '|' => Tok::Bar,
                    '_' => Tok::Underscore,
                    '^' => Tok::Caret,
                    ':' => Tok::Colon,
                    '<' => Tok::Lt,
                    '>' => Tok::Gt,
                    '!' => Tok::Bang,
                    ',' => Tok::Comma,
                    '.' => Tok::Dot,
                    c if c.is_ascii_alphabetic() => Tok::Letter(c),
                    c if c.is_ascii_digit() => Tok::Digit(c),
                    _ => return (tokens, true),
                };
                i += 1;
                tok
            }
        };
        tokens.push(tok);
    }
    (tokens, false)
}

/// sympy's `parse_latex(text)`.
pub(crate) fn parse_latex(text: &str, budget: &Budget) -> Parse<Object> {
    let (tokens, unreadable) = lex(text);
    let mut parser = Parser {
        tokens,
        unreadable,
        pos: 0,
        depth: 0,
        open_bars: 0,
        budget,
    };
    parser.relation()
}

struct Parser<'a> {
    tokens: Vec<Tok>,
    /// A character after the last token cannot be read.
    unreadable: bool,
    pos: usize,
    depth: usize,
    /// Absolute-value bars opened and not yet closed.
    open_bars: usize,
    budget: &'a Budget,
}

/// One factor of a juxtaposed product, before the lone-`x` rule is applied.
type Factor = Expr;

impl Parser<'_> {
    /// The token `k` places ahead; `None` at the end; fatal where the lexer failed.
    fn peek_at(&self, k: usize) -> Parse<Option<&Tok>> {
        match self.tokens.get(self.pos + k) {
            Some(tok) => Ok(Some(tok)),
            None if self.unreadable => Err(Failure::Fatal),
            None => Ok(None),
        }
    }

    fn peek(&self) -> Parse<Option<&Tok>> {
        self.peek_at(0)
    }

    fn bump(&mut self) -> Parse<Tok> {
        let tok = self.peek()?.cloned().ok_or(Failure::Syntax)?;
        self.pos += 1;
        Ok(tok)
    }

    fn expect(&mut self, expected: &Tok) -> Parse<()> {
        if self.peek()? == Some(expected) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Failure::Syntax)
        }
    }

    fn enter(&mut self) -> Parse<()> {
        self.budget.check()?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Failure::Fatal);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Runs `f`; on a syntax error, puts the position back and returns `None` (a loop's exit).
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Parse<T>) -> Parse<Option<T>> {
        let (pos, depth, open_bars) = (self.pos, self.depth, self.open_bars);
        match f(self) {
            Ok(value) => Ok(Some(value)),
            Err(Failure::Syntax) => {
                self.pos = pos;
                self.depth = depth;
                self.open_bars = open_bars;
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    fn relation(&mut self) -> Parse<Object> {
        let mut left = Object::Expr(self.expr()?);
        loop {
            let op = match self.peek()? {
                Some(Tok::Equal) => RelOp::Eq,
                Some(Tok::Neq) => RelOp::Ne,
                Some(Tok::Lt) => RelOp::Lt,
                Some(Tok::Lte) => RelOp::Le,
                Some(Tok::Gt) => RelOp::Gt,
                Some(Tok::Gte) => RelOp::Ge,
                _ => return Ok(left),
            };
            // Nothing but the end may follow a relation, so ANTLR commits to the right side
            // here: `1=(2` fails where `1+(2` is `1`.
            self.pos += 1;
            let right = self.expr()?;
            left = relate(op, left, right, self.budget)?;
        }
    }

    fn expr(&mut self) -> Parse<Expr> {
        self.enter()?;
        let result = self.additive();
        self.leave();
        result
    }

    fn additive(&mut self) -> Parse<Expr> {
        let mut terms = vec![self.mp(false)?];
        loop {
            let negate = match self.peek()? {
                Some(Tok::Add) => false,
                Some(Tok::Sub) => true,
                _ => break,
            };
            let Some(term) = self.attempt(|p| {
                p.pos += 1;
                p.mp(false)
            })?
            else {
                break;
            };
            terms.push(if negate { term.neg() } else { term });
        }
        Ok(single_or(terms, Expr::Add))
    }

    /// `mp`, or `mp_nofunc` (a function's argument without parentheses) when `nofunc`.
    fn mp(&mut self, nofunc: bool) -> Parse<Expr> {
        let mut factors = vec![self.unary(nofunc)?];
        loop {
            let divide = match self.peek()? {
                Some(Tok::Mul | Tok::Times | Tok::Cdot) => false,
                Some(Tok::Div | Tok::CmdDiv | Tok::Colon) => true,
                _ => break,
            };
            let Some(factor) = self.attempt(|p| {
                p.pos += 1;
                p.unary(nofunc)
            })?
            else {
                break;
            };
            factors.push(if divide {
                Expr::Pow(Box::new(factor), Box::new(Expr::integer(-1)))
            } else {
                factor
            });
        }
        Ok(single_or(factors, Expr::Mul))
    }

    fn unary(&mut self, nofunc: bool) -> Parse<Expr> {
        self.enter()?;
        let result = self.unary_inner(nofunc);
        self.leave();
        result
    }

    fn unary_inner(&mut self, nofunc: bool) -> Parse<Expr> {
        match self.peek()? {
            Some(Tok::Add) => {
                self.pos += 1;
                return self.unary(nofunc);
            }
            Some(Tok::Sub) => {
                self.pos += 1;
                return Ok(self.unary(nofunc)?.neg());
            }
            _ => {}
        }
        // `postfix+`, or `postfix postfix_nofunc*`.
        let mut factors: Vec<Factor> = vec![self.postfix(true)?];
        loop {
            let start = self.pos;
            let bar = self.peek()? == Some(&Tok::Bar);
            let Some(factor) = self.attempt(|p| p.postfix(!nofunc))? else {
                break;
            };
            // A bar inside `|…|` may open a new absolute value or close the open one. ANTLR
            // looks ahead to the end and opens one only if enough bars remain to close every
            // open one: `||e|+7|` is |(|e|+7)|, `|a|b|c|` is |a·|b|·c|.
            if bar && self.open_bars > 0 {
                let remaining = self.tokens[self.pos..]
                    .iter()
                    .filter(|tok| **tok == Tok::Bar)
                    .count();
                if remaining < self.open_bars {
                    self.pos = start;
                    break;
                }
            }
            factors.push(factor);
        }
        Ok(juxtaposed(factors))
    }

    fn postfix(&mut self, allow_func: bool) -> Parse<Expr> {
        let mut value = self.exp(allow_func)?;
        loop {
            match self.peek()? {
                Some(Tok::Bang) => {
                    self.pos += 1;
                    self.enter()?;
                    value = Expr::Call(Func::Factorial, vec![value]);
                }
                _ => return Ok(value),
            }
        }
    }

    fn exp(&mut self, allow_func: bool) -> Parse<Expr> {
        let mut base = self.comp(allow_func)?;
        while self.peek()? == Some(&Tok::Caret) {
            let Some(exponent) = self.attempt(|p| {
                p.pos += 1;
                let exponent = p.atom_or_braced()?;
                if p.peek()? == Some(&Tok::Underscore) {
                    // A subscript after the exponent is parsed and dropped.
                    p.attempt(Self::subscript)?;
                }
                Ok(exponent)
            })?
            else {
                break;
            };
            self.enter()?;
            base = Expr::Pow(Box::new(base), Box::new(exponent));
        }
        Ok(base)
    }

    /// `atom | '{' expr '}'`: a superscript's or subscript's body.
    fn atom_or_braced(&mut self) -> Parse<Expr> {
        if self.peek()? == Some(&Tok::LBrace) {
            self.pos += 1;
            let inner = self.expr()?;
            self.expect(&Tok::RBrace)?;
            Ok(inner)
        } else {
            self.atom()
        }
    }

    fn subscript(&mut self) -> Parse<Expr> {
        self.expect(&Tok::Underscore)?;
        self.atom_or_braced()
    }

    fn superscript(&mut self) -> Parse<Expr> {
        self.expect(&Tok::Caret)?;
        self.atom_or_braced()
    }

    fn comp(&mut self, allow_func: bool) -> Parse<Expr> {
        self.enter()?;
        let result = self.comp_inner(allow_func);
        self.leave();
        result
    }

    fn comp_inner(&mut self, allow_func: bool) -> Parse<Expr> {
        let closing = match self.peek()? {
            Some(Tok::LParen) => Some(Tok::RParen),
            Some(Tok::LBracket) => Some(Tok::RBracket),
            Some(Tok::LBrace) => Some(Tok::RBrace),
            Some(Tok::LBraceLiteral) => Some(Tok::RBraceLiteral),
            Some(Tok::Bar) => Some(Tok::Bar),
            Some(Tok::LFloor) => Some(Tok::RFloor),
            Some(Tok::LCeil) => Some(Tok::RCeil),
            _ => None,
        };
        if let Some(closing) = closing {
            let opening = self.bump()?;
            let bar = opening == Tok::Bar;
            self.open_bars += usize::from(bar);
            let inner = self.expr();
            self.open_bars -= usize::from(bar);
            let inner = inner?;
            self.expect(&closing)?;
            return Ok(match opening {
                Tok::Bar => Expr::Call(Func::Abs, vec![inner]),
                Tok::LFloor => Expr::Call(Func::Floor, vec![inner]),
                Tok::LCeil => Expr::Call(Func::Ceiling, vec![inner]),
                _ => inner,
            });
        }
        if allow_func {
            match self.peek()? {
                Some(Tok::Func(_)) => return self.normal_func(),
                Some(Tok::Letter(_) | Tok::Symbol(_)) => {
                    if let Some(call) = self.attempt(Self::applied_func)? {
                        return Ok(call);
                    }
                }
                Some(Tok::Sqrt) => {
                    self.pos += 1;
                    let root = if self.peek()? == Some(&Tok::LBracket) {
                        self.pos += 1;
                        let root = self.expr()?;
                        self.expect(&Tok::RBracket)?;
                        Some(root)
                    } else {
                        None
                    };
                    self.expect(&Tok::LBrace)?;
                    let base = self.expr()?;
                    self.expect(&Tok::RBrace)?;
                    let exponent = match root {
                        Some(root) => Expr::Pow(Box::new(root), Box::new(Expr::integer(-1))),
                        None => Expr::Rational(BigRational::new(1.into(), 2.into())),
                    };
                    return Ok(Expr::Pow(Box::new(base), Box::new(exponent)));
                }
                Some(Tok::Overline) => {
                    self.pos += 1;
                    self.expect(&Tok::LBrace)?;
                    let base = self.expr()?;
                    self.expect(&Tok::RBrace)?;
                    return Ok(Expr::Call(Func::Conjugate, vec![base]));
                }
                Some(Tok::Unsupported) => return Err(Failure::Fatal),
                _ => {}
            }
        }
        self.atom()
    }

    /// `\sin^2 x`, `\log_2(8)`, `\sin^{-1} x`.
    fn normal_func(&mut self) -> Parse<Expr> {
        let Tok::Func(func) = self.bump()? else {
            return Err(Failure::Syntax);
        };
        let (mut sub, mut sup) = (None, None);
        match self.peek()? {
            Some(Tok::Underscore) => {
                sub = Some(self.subscript()?);
                if self.peek()? == Some(&Tok::Caret) {
                    sup = Some(self.superscript()?);
                }
            }
            Some(Tok::Caret) => {
                sup = Some(self.superscript()?);
                if self.peek()? == Some(&Tok::Underscore) {
                    sub = Some(self.subscript()?);
                }
            }
            _ => {}
        }
        let arg = match self.attempt(|p| {
            p.expect(&Tok::LParen)?;
            let arg = p.func_arg()?;
            p.expect(&Tok::RParen)?;
            Ok(arg)
        })? {
            Some(arg) => arg,
            None => self.mp(true)?,
        };
        let inverse = sup.as_ref().is_some_and(|s| *s == Expr::integer(-1));
        let value = match func {
            NormalFunc::Exp => Expr::Call(Func::Exp, vec![arg]),
            NormalFunc::Log | NormalFunc::Lg | NormalFunc::Ln => {
                let base = match (sub, func) {
                    (Some(base), _) => Some(base),
                    (None, NormalFunc::Lg) => Some(Expr::integer(10)),
                    _ => None,
                };
                Expr::Call(Func::Log, std::iter::once(arg).chain(base).collect())
            }
            NormalFunc::Trig(f) => {
                let plain_trig = matches!(
                    f,
                    Func::Sin
                        | Func::Cos
                        | Func::Tan
                        | Func::Csc
                        | Func::Sec
                        | Func::Cot
                        | Func::Sinh
                        | Func::Cosh
                        | Func::Tanh
                );
                if plain_trig && inverse {
                    return Ok(Expr::Call(inverse_of(f), vec![arg]));
                }
                Expr::Call(f, vec![arg])
            }
        };
        Ok(match sup {
            Some(power) if !is_zero(&power) => Expr::Pow(Box::new(value), Box::new(power)),
            _ => value,
        })
    }

    /// `func_arg: expr | expr ',' func_arg`: the first expression is the argument.
    fn func_arg(&mut self) -> Parse<Expr> {
        let first = self.expr()?;
        while self.peek()? == Some(&Tok::Comma) {
            if self
                .attempt(|p| {
                    p.pos += 1;
                    p.expr()
                })?
                .is_none()
            {
                break;
            }
        }
        Ok(first)
    }

    /// `f(x)`, `f_1'(x, y)`: an undefined function applied.
    fn applied_func(&mut self) -> Parse<Expr> {
        let (name, _) = self.name()?;
        self.expect(&Tok::LParen)?;
        let mut args = vec![self.expr()?];
        while self.peek()? == Some(&Tok::Comma) {
            self.pos += 1;
            args.push(self.expr()?);
        }
        self.expect(&Tok::RParen)?;
        Ok(Expr::Applied(name, args))
    }

    /// `(LETTER | SYMBOL) (subexpr? SINGLE_QUOTES? | SINGLE_QUOTES? subexpr?)` as sympy names
    /// it, and whether it was `\infty`.
    fn name(&mut self) -> Parse<(String, bool)> {
        let (base, letter) = match self.bump()? {
            Tok::Letter(c) => (c.to_string(), true),
            Tok::Symbol(s) => (s, false),
            _ => return Err(Failure::Syntax),
        };
        let mut quotes = 0;
        let mut sub = None;
        if let Some(Tok::Quotes(n)) = self.peek()? {
            quotes = *n;
            self.pos += 1;
        }
        if self.peek()? == Some(&Tok::Underscore) {
            sub = Some(self.subscript()?);
        }
        if quotes == 0 {
            if let Some(Tok::Quotes(n)) = self.peek()? {
                if sub.is_some() {
                    quotes = *n;
                    self.pos += 1;
                }
            }
        }
        let infinity = !letter && base == "infty";
        let mut name = base;
        if let Some(sub) = sub {
            name.push_str(&format!("_{{{sub:?}}}"));
        }
        if letter {
            name.push_str(&"'".repeat(quotes));
        }
        Ok((name, infinity))
    }

    fn atom(&mut self) -> Parse<Expr> {
        match self.peek()?.cloned() {
            Some(Tok::Letter(_) | Tok::Symbol(_)) => {
                let (name, infinity) = self.name()?;
                Ok(if infinity {
                    Expr::Constant(super::expr::Constant::Infinity)
                } else {
                    Expr::Symbol(name)
                })
            }
            Some(Tok::Digit(_)) => self.number(),
            Some(Tok::Differential(var)) => {
                self.pos += 1;
                Ok(Expr::Symbol(format!("d{var}")))
            }
            Some(Tok::Mathit) => {
                self.pos += 1;
                self.expect(&Tok::LBrace)?;
                let mut text = String::new();
                while let Some(Tok::Letter(c)) = self.peek()? {
                    text.push(*c);
                    self.pos += 1;
                }
                self.expect(&Tok::RBrace)?;
                Ok(Expr::Symbol(text))
            }
            Some(Tok::Frac) => self.frac(),
            Some(Tok::Binom) => {
                self.pos += 1;
                self.expect(&Tok::LBrace)?;
                let n = self.expr()?;
                self.expect(&Tok::RBrace)?;
                self.expect(&Tok::LBrace)?;
                let k = self.expr()?;
                self.expect(&Tok::RBrace)?;
                Ok(Expr::Call(Func::Binomial, vec![n, k]))
            }
            // Bras and kets.
            Some(Tok::LAngle | Tok::LBar) => Err(Failure::Fatal),
            _ => Err(Failure::Syntax),
        }
    }

    /// `DIGIT+ (',' DIGIT DIGIT DIGIT)* ('.' DIGIT+)?`.
    fn number(&mut self) -> Parse<Expr> {
        let mut digits = String::new();
        while let Some(Tok::Digit(d)) = self.peek()? {
            digits.push(*d);
            self.pos += 1;
        }
        while self.peek()? == Some(&Tok::Comma) {
            let group: Vec<char> = (1..=3)
                .map_while(|k| match self.peek_at(k) {
                    Ok(Some(Tok::Digit(d))) => Some(*d),
                    _ => None,
                })
                .collect();
            if group.len() < 3 {
                // The lookahead itself may reach an unreadable character.
                for k in 1..=group.len() + 1 {
                    self.peek_at(k)?;
                }
                break;
            }
            digits.extend(group);
            self.pos += 4;
        }
        if self.peek()? == Some(&Tok::Dot) {
            self.pos += 1;
            let mut fraction = String::new();
            while let Some(Tok::Digit(d)) = self.peek()? {
                fraction.push(*d);
                self.pos += 1;
            }
            if fraction.is_empty() {
                return Err(Failure::Syntax);
            }
            let text = format!("{digits}.{fraction}");
            return text.parse().map(Expr::Float).map_err(|_| Failure::Syntax);
        }
        BigInt::from_str_radix(&digits, 10)
            .map(|n| Expr::Rational(BigRational::from_integer(n)))
            .map_err(|_| Failure::Syntax)
    }

    fn frac(&mut self) -> Parse<Expr> {
        self.expect(&Tok::Frac)?;
        let upper_start = self.pos + 1;
        let upper = self.frac_part()?;
        let lower_start = self.pos + 1;
        let lower_end = {
            let lower = self.frac_part()?;
            let end = self.pos - 1;
            // `\frac{d}{dx}`, `\frac{\partial}{\partial x}`: derivatives, not built.
            let single_differential =
                end == lower_start + 1 && matches!(self.tokens[lower_start], Tok::Differential(_));
            let partial =
                end == lower_start + 2 && self.tokens[lower_start] == Tok::Symbol("partial".into());
            if single_differential
                && matches!(
                    self.tokens.get(upper_start),
                    Some(Tok::Letter('d') | Tok::Differential(_))
                )
                || partial
            {
                return Err(Failure::Fatal);
            }
            lower
        };
        Ok(if upper == Expr::integer(1) {
            Expr::Pow(Box::new(lower_end), Box::new(Expr::integer(-1)))
        } else {
            Expr::div(upper, lower_end)
        })
    }

    /// `DIGIT | '{' expr '}'`.
    fn frac_part(&mut self) -> Parse<Expr> {
        match self.peek()?.cloned() {
            Some(Tok::Digit(d)) => {
                self.pos += 1;
                Ok(Expr::integer(i64::from(d.to_digit(10).unwrap_or(0))))
            }
            Some(Tok::LBrace) => {
                self.pos += 1;
                let inner = self.expr()?;
                self.expect(&Tok::RBrace)?;
                Ok(inner)
            }
            _ => Err(Failure::Syntax),
        }
    }
}

fn single_or(mut items: Vec<Expr>, wrap: fn(Vec<Expr>) -> Expr) -> Expr {
    if items.len() == 1 {
        items.pop().expect("one item")
    } else {
        wrap(items)
    }
}

fn is_zero(expr: &Expr) -> bool {
    *expr == Expr::integer(0)
}

fn inverse_of(f: Func) -> Func {
    match f {
        Func::Sin => Func::Asin,
        Func::Cos => Func::Acos,
        Func::Tan => Func::Atan,
        Func::Csc => Func::Acsc,
        Func::Sec => Func::Asec,
        Func::Cot => Func::Acot,
        Func::Sinh => Func::Asinh,
        Func::Cosh => Func::Acosh,
        Func::Tanh => Func::Atanh,
        other => other,
    }
}

/// sympy's `convert_postfix_list`: the product of juxtaposed factors, where a lone `x`
/// between two symbol-free factors is a times sign and drops out.
fn juxtaposed(factors: Vec<Factor>) -> Expr {
    if factors.len() == 1 {
        return single_or(factors, Expr::Mul);
    }
    let last = factors.len() - 1;
    let times: Vec<bool> = (0..factors.len())
        .map(|i| {
            i > 0
                && i < last
                && factors[i].is_symbol_named("x")
                && !factors[i - 1].has_symbols()
                && !factors[i + 1].has_symbols()
        })
        .collect();
    let kept: Vec<Expr> = factors
        .into_iter()
        .zip(times)
        .filter_map(|(factor, times)| (!times).then_some(factor))
        .collect();
    single_or(kept, Expr::Mul)
}

/// `sympy.Eq(l, r)` and the other relations as sympy builds them: decided to `True`/`False`
/// where the sides' difference is a number, kept otherwise.
fn relate(op: RelOp, left: Object, right: Expr, budget: &Budget) -> Parse<Object> {
    let left = match left {
        Object::Expr(left) => left,
        // A relation or truth value compared again: `Eq` of a boolean and a number is False;
        // a bare symbol might be a boolean, so that one stays undecided.
        other => {
            if matches!(right, Expr::Symbol(_)) && matches!(op, RelOp::Eq | RelOp::Ne) {
                return Ok(Object::Opaque(format!("{op:?}({other:?}, {right:?})")));
            }
            return match op {
                RelOp::Eq => Ok(Object::Bool(false)),
                RelOp::Ne => Ok(Object::Bool(true)),
                _ => Err(Failure::Fatal),
            };
        }
    };
    let difference = Expr::Add(vec![left.clone(), right.clone().neg()]);
    let at = |seed| eval(&difference, &Point(seed), budget);
    let (first, second) = (at(1)?, at(2)?);
    let constant = (left.is_constant() && right.is_constant()) || first.same(&second);
    if !constant {
        return Ok(Object::Relation(op, left, right));
    }
    let zero = Value::Exact(BigRational::zero());
    if let Value::Undefined = first {
        return match op {
            RelOp::Eq => Ok(Object::Bool(false)),
            RelOp::Ne => Ok(Object::Bool(true)),
            _ => Err(Failure::Fatal),
        };
    }
    let is_zero = match &first {
        Value::Exact(r) => *r == BigRational::zero(),
        other => other.to_real() == Some(0.0) || (other.to_real().is_none() && other.same(&zero)),
    };
    let sign = match &first {
        Value::Exact(r) => r.numer().sign() as i32,
        other => match other.to_real() {
            Some(x) if x > 0.0 => 1,
            Some(x) if x < 0.0 => -1,
            Some(_) => 0,
            None if is_zero => 0,
            // Order comparisons of complex numbers raise in sympy.
            None if op != RelOp::Eq && op != RelOp::Ne => return Err(Failure::Fatal),
            None => 2,
        },
    };
    Ok(Object::Bool(match op {
        RelOp::Eq => is_zero,
        RelOp::Ne => !is_zero,
        RelOp::Lt => sign == -1,
        RelOp::Le => sign == -1 || sign == 0,
        RelOp::Gt => sign == 1,
        RelOp::Ge => sign == 1 || sign == 0,
    }))
}
