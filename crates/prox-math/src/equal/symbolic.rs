//! The harness's `symbolic_equal(a, b)`: each side parsed by the first of `parse_latex` and
//! `parse_expr` that succeeds (on the text with `\\` read as `\`, then as is), else kept as
//! text; then equal if `str(a) == str(b)` or `a == b`, `simplify(a - b) == 0`, the relations'
//! `|lhs - rhs|` agree, or `float(N(a))` and `float(N(b))` are close.
//!
//! `simplify(a - b) == 0` is decided by evaluating both sides exactly where they are rational
//! and otherwise at several complex points; `str(a) == str(b)` between a text sympy could not
//! parse and a parsed expression is taken to be false. (`latex2sympy`, the harness's third
//! parser, never succeeds with the ANTLR runtime sympy 1.12 needs, so it is not modelled.)

use super::budget::{Budget, OutOfTime};
use super::expr::{eval, Expr, Func, Object, Point};
use super::latex::{parse_latex, Failure};
use super::number::isclose;
use super::plain::parse_expr;

/// The points two expressions with free symbols must agree at to be the same function.
const POINTS: [u64; 5] = [11, 23, 37, 41, 53];

/// One side as `_parse` leaves it.
#[derive(Debug)]
enum Parsed {
    Object(Object),
    Text(String),
}

pub(crate) fn symbolic_equal(a: &str, b: &str, budget: &Budget) -> Result<bool, OutOfTime> {
    let a = parse(a, budget)?;
    let b = parse(b, budget)?;
    match (&a, &b) {
        (Parsed::Text(a), Parsed::Text(b)) => Ok(a == b),
        (Parsed::Object(a), Parsed::Object(b)) => objects_equal(a, b, budget),
        _ => Ok(false),
    }
}

fn parse(text: &str, budget: &Budget) -> Result<Parsed, OutOfTime> {
    let unescaped = text.replace("\\\\", "\\");
    let variants: &[&str] = if unescaped == text {
        &[text]
    } else {
        &[&unescaped, text]
    };
    type Parser = fn(&str, &Budget) -> Result<Object, Failure>;
    for parser in [parse_latex as Parser, parse_expr as Parser] {
        for variant in variants {
            match parser(variant, budget) {
                Ok(object) => return Ok(Parsed::Object(object)),
                Err(Failure::Timeout) => return Err(OutOfTime),
                Err(Failure::Syntax | Failure::Fatal) => {}
            }
        }
    }
    Ok(Parsed::Text(text.to_owned()))
}

fn objects_equal(a: &Object, b: &Object, budget: &Budget) -> Result<bool, OutOfTime> {
    // `str(a) == str(b) or a == b`: the same tree.
    if a == b {
        return Ok(true);
    }
    match (a, b) {
        (Object::Expr(a), Object::Expr(b)) => {
            if identical(a, b, budget)? {
                return Ok(true);
            }
            // float(N(a)) and float(N(b)): both real numbers, close.
            if a.is_constant() && b.is_constant() {
                let point = Point(POINTS[0]);
                let (va, vb) = (eval(a, &point, budget)?, eval(b, &point, budget)?);
                if let (Some(x), Some(y)) = (va.to_real(), vb.to_real()) {
                    return Ok(isclose(y, x));
                }
            }
            Ok(false)
        }
        (Object::Bool(a), Object::Bool(b)) => Ok(a == b),
        (Object::Relation(_, left_a, right_a), Object::Relation(_, left_b, right_b)) => {
            let distance = |left: &Expr, right: &Expr| {
                Expr::Call(
                    Func::Abs,
                    vec![Expr::Add(vec![left.clone(), right.clone().neg()])],
                )
            };
            identical(
                &distance(left_a, right_a),
                &distance(left_b, right_b),
                budget,
            )
        }
        (Object::Tuple(xs), Object::Tuple(ys)) | (Object::List(xs), Object::List(ys)) => {
            if xs.len() != ys.len() {
                return Ok(false);
            }
            for (x, y) in xs.iter().zip(ys) {
                let same = match (x, y) {
                    (Object::Expr(x), Object::Expr(y)) => identical(x, y, budget)?,
                    _ => objects_equal(x, y, budget)?,
                };
                if !same {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Whether `a - b` is zero: exactly for constants; for expressions in free symbols, at every
/// point of [`POINTS`] where both sides have a finite value (a point where a side overflows,
/// as `x^{a^{49}}` does away from the unit circle, or is undefined tells nothing), and there
/// must be two such points.
fn identical(a: &Expr, b: &Expr, budget: &Budget) -> Result<bool, OutOfTime> {
    if a.is_constant() && b.is_constant() {
        let point = Point(POINTS[0]);
        return Ok(eval(a, &point, budget)?.same(&eval(b, &point, budget)?));
    }
    let mut informative = 0;
    let mut undefined = false;
    for &seed in &POINTS {
        let point = Point(seed);
        let (va, vb) = (eval(a, &point, budget)?, eval(b, &point, budget)?);
        undefined |= va.is_undefined() || vb.is_undefined();
        if !(va.is_finite() && vb.is_finite()) {
            continue;
        }
        if !va.same(&vb) {
            return Ok(false);
        }
        informative += 1;
    }
    if informative >= 2 {
        return Ok(true);
    }
    // Too few points to tell (`\cos(5040y)` overflows off the real line): the same tree once
    // sums and products are flattened and their 0 terms and 1 factors dropped, as sympy's
    // automatic evaluation makes them.
    Ok(informative == 0 && !undefined && normalized(a) == normalized(b))
}

fn normalized(expr: &Expr) -> Expr {
    let flatten = |items: &[Expr], unit: i64, is_same: fn(&Expr) -> Option<&Vec<Expr>>| {
        let mut out = Vec::new();
        for item in items.iter().map(normalized) {
            match is_same(&item) {
                Some(inner) => out.extend(inner.iter().cloned()),
                None if item == Expr::integer(unit) => {}
                None => out.push(item),
            }
        }
        out.sort_by_cached_key(|item| format!("{item:?}"));
        out
    };
    match expr {
        Expr::Add(terms) => {
            let mut terms = flatten(terms, 0, |e| match e {
                Expr::Add(inner) => Some(inner),
                _ => None,
            });
            match terms.len() {
                0 => Expr::integer(0),
                1 => terms.remove(0),
                _ => Expr::Add(terms),
            }
        }
        Expr::Mul(factors) => {
            let mut factors = flatten(factors, 1, |e| match e {
                Expr::Mul(inner) => Some(inner),
                _ => None,
            });
            match factors.len() {
                0 => Expr::integer(1),
                1 => factors.remove(0),
                _ => Expr::Mul(factors),
            }
        }
        Expr::Pow(base, exp) => Expr::Pow(Box::new(normalized(base)), Box::new(normalized(exp))),
        Expr::Call(func, args) => Expr::Call(*func, args.iter().map(normalized).collect()),
        Expr::Applied(name, args) => {
            Expr::Applied(name.clone(), args.iter().map(normalized).collect())
        }
        leaf => leaf.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn equal(a: &str, b: &str) -> bool {
        symbolic_equal(a, b, &Budget::new(Duration::from_secs(3))).expect("within budget")
    }

    #[test]
    fn a_leading_expression_is_all_parse_latex_reads() {
        assert!(equal("1", "1,-2"));
        assert!(equal("4210", "4210_{5}"));
        assert!(equal("+5)(2", "+5)(b+2"));
        assert!(!equal("2.01", "1,-2"));
    }

    #[test]
    fn juxtaposition_multiplies_and_decimals_compare_within_a_tolerance() {
        assert!(equal("68.5", "137\\frac{1}{2}"));
        assert!(equal("35.596748", "11\\sqrt{5}+11"));
        assert!(!equal("35.5", "11\\sqrt{5}+11"));
        assert!(equal("746496", "864^2"));
        assert!(equal("\\infty", "\\infty!"), "factorial(oo) is oo");
    }

    #[test]
    fn identities_in_free_symbols_are_equal_and_near_misses_are_not() {
        assert!(equal("\\frac{x}{7}+\\frac{2}{7}", "\\frac{x+2}{7}"));
        assert!(equal("\\sec^2(y)", "\\tan^2(y)+1"));
        assert!(equal("\\frac{x^2-1}{x-1}", "x+1"));
        assert!(!equal("\\sqrt{x^2}", "x"), "sympy's symbols are complex");
        assert!(!equal("2\\pi", "6.2832"), "\\pi is a symbol to parse_latex");
        assert!(!equal("x^2", "x^3"));
    }

    #[test]
    fn unparsable_sides_compare_as_text() {
        assert!(!equal("\\{3}{56}", "\\frac{3}{56}"));
        assert!(equal("(-\\infty,0]x", "(-\\infty,0]x"));
        assert!(!equal("", "\\begin{pmatrix}1\\end{pmatrix}"));
    }

    #[test]
    fn python_tuples_compare_elementwise() {
        assert!(equal("(2, 4)", "(2,4)"));
        assert!(!equal("(2, 4)", "(4, 2)"));
        assert!(!equal("(2, 4)", "[2, 4]"));
    }

    #[test]
    fn relations_are_decided_when_built_and_compared_by_their_sides() {
        assert!(!equal("8-4=4", "4"));
        assert!(equal("8-4=4", "1+1=2"));
        assert!(equal("y=2x+1", "2x-y+1=0"));
        assert!(!equal("y=2x+1", "y=2x+2"));
    }
}
