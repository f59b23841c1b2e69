//! The expression tree both parsers build, and its evaluation.
//!
//! Values are exact rationals while an expression stays rational (integers, fractions, integer
//! powers, perfect roots, factorials), which is what `simplify(a - b) == 0` decides exactly in
//! sympy; otherwise complex `f64`, with the magnitude of the terms that were added on the way
//! (`scale`), so that a difference that cancelled to rounding noise (`\sqrt{2}^2 - 2`) is told
//! from one that is small but real (`10^{-20}`). Free symbols take pseudo-random complex values
//! (sympy's symbols are complex), so two expressions that agree at several points are taken to
//! be the same function, as `simplify` would prove.

use num_bigint::BigInt;
use num_complex::Complex64;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::budget::{Budget, OutOfTime};

/// A scalar expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    Rational(BigRational),
    /// A sympy `Float` (a number written with a decimal point).
    Float(f64),
    Symbol(String),
    /// `oo`, `pi`, `E`, `I`, `zoo`, `nan`.
    Constant(Constant),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
    /// An undefined function applied to arguments (`f(x)`).
    Applied(String, Vec<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Constant {
    Infinity,
    Pi,
    E,
    I,
    ComplexInfinity,
    NaN,
}

/// The functions both parsers know, with sympy's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Func {
    Sin,
    Cos,
    Tan,
    Csc,
    Sec,
    Cot,
    Asin,
    Acos,
    Atan,
    Acsc,
    Asec,
    Acot,
    Sinh,
    Cosh,
    Tanh,
    Asinh,
    Acosh,
    Atanh,
    Exp,
    /// `log(x)` or `log(x, base)`.
    Log,
    Abs,
    Floor,
    Ceiling,
    Factorial,
    Binomial,
    Conjugate,
}

/// A relation's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a parser returns: sympy objects the harness's checks tell apart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Object {
    Expr(Expr),
    /// An unevaluated relation (`x = 1`, `x < 2`).
    Relation(RelOp, Expr, Expr),
    /// A relation sympy decided while building it (`1 = 1`, `2 < 1`).
    Bool(bool),
    /// A Python tuple or list from `parse_expr` (`(2, 4)`, `[1, 2]`).
    Tuple(Vec<Object>),
    List(Vec<Object>),
    /// Something sympy builds that only the same text equals (`Eq(True, t)`).
    Opaque(String),
}

impl Expr {
    pub(crate) fn integer(n: i64) -> Expr {
        Expr::Rational(BigRational::from_integer(BigInt::from(n)))
    }

    pub(crate) fn neg(self) -> Expr {
        match self {
            Expr::Rational(r) => Expr::Rational(-r),
            Expr::Float(f) => Expr::Float(-f),
            other => Expr::Mul(vec![Expr::integer(-1), other]),
        }
    }

    pub(crate) fn div(numerator: Expr, denominator: Expr) -> Expr {
        Expr::Mul(vec![
            numerator,
            Expr::Pow(Box::new(denominator), Box::new(Expr::integer(-1))),
        ])
    }

    pub(crate) fn is_symbol_named(&self, name: &str) -> bool {
        matches!(self, Expr::Symbol(s) if s == name)
    }

    /// Whether a symbol occurs anywhere (sympy's `atoms(Symbol)` is not empty).
    pub(crate) fn has_symbols(&self) -> bool {
        match self {
            Expr::Symbol(_) => true,
            Expr::Rational(_) | Expr::Float(_) | Expr::Constant(_) => false,
            Expr::Add(terms) | Expr::Mul(terms) | Expr::Call(_, terms) => {
                terms.iter().any(Expr::has_symbols)
            }
            Expr::Applied(_, args) => args.iter().any(Expr::has_symbols),
            Expr::Pow(base, exp) => base.has_symbols() || exp.has_symbols(),
        }
    }

    /// Whether the expression has free symbols or undefined functions, which make sympy's
    /// `float(N(expr))` fail.
    pub(crate) fn is_constant(&self) -> bool {
        match self {
            Expr::Symbol(_) | Expr::Applied(..) => false,
            Expr::Rational(_) | Expr::Float(_) | Expr::Constant(_) => true,
            Expr::Add(terms) | Expr::Mul(terms) | Expr::Call(_, terms) => {
                terms.iter().all(Expr::is_constant)
            }
            Expr::Pow(base, exp) => base.is_constant() && exp.is_constant(),
        }
    }
}

/// A value: exact, approximate (complex, with the magnitude of what was summed into it), or
/// undefined (`nan`, `zoo`).
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Exact(BigRational),
    Approx { z: Complex64, scale: f64 },
    Undefined,
}

/// Exact integer powers and roots stop at this many bits; beyond it, floating point (where
/// sympy would grind on exactly, and likely run out of time).
const MAX_EXACT_BITS: u64 = 20_000;

impl Value {
    fn approx(z: Complex64, scale: f64) -> Value {
        if z.re.is_nan() || z.im.is_nan() {
            Value::Undefined
        } else {
            Value::Approx {
                z,
                scale: scale.max(z.norm()),
            }
        }
    }

    fn real(x: f64) -> Value {
        Value::approx(Complex64::new(x, 0.0), x.abs())
    }

    /// The value as a complex float and the scale of its rounding.
    pub(crate) fn complex(&self) -> Option<(Complex64, f64)> {
        match self {
            Value::Exact(r) => {
                let x = rational_to_f64(r);
                Some((Complex64::new(x, 0.0), x.abs()))
            }
            Value::Approx { z, scale } => Some((*z, *scale)),
            Value::Undefined => None,
        }
    }

    pub(crate) fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }

    /// Whether the value is a finite number.
    pub(crate) fn is_finite(&self) -> bool {
        match self {
            Value::Exact(_) => true,
            Value::Approx { z, .. } => z.re.is_finite() && z.im.is_finite(),
            Value::Undefined => false,
        }
    }

    /// `float(N(value))`: the value if it is real.
    pub(crate) fn to_real(&self) -> Option<f64> {
        match self.complex() {
            Some((z, _)) if z.im == 0.0 => Some(z.re),
            _ => None,
        }
    }

    /// Whether two values are the same number, as sympy's exact arithmetic would find:
    /// exactly for rationals, within rounding of the terms involved otherwise.
    pub(crate) fn same(&self, other: &Value) -> bool {
        if let (Value::Exact(a), Value::Exact(b)) = (self, other) {
            return a == b;
        }
        let (Some((a, scale_a)), Some((b, scale_b))) = (self.complex(), other.complex()) else {
            return false;
        };
        if a == b {
            return true;
        }
        if !(a.re.is_finite() && a.im.is_finite() && b.re.is_finite() && b.im.is_finite()) {
            return false;
        }
        const ROUNDING: f64 = 1e-10;
        let scale = scale_a.max(scale_b).max(a.norm()).max(b.norm());
        (a - b).norm() <= ROUNDING * scale
    }
}

fn rational_to_f64(r: &BigRational) -> f64 {
    r.to_f64().unwrap_or(f64::NAN)
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits().max(r.denom().bits())
}

fn add(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Exact(a), Value::Exact(b)) => Value::Exact(a + b),
        (a, b) => match (a.complex(), b.complex()) {
            (Some((za, sa)), Some((zb, sb))) => {
                let sum = if za.im == 0.0 && zb.im == 0.0 {
                    Complex64::new(za.re + zb.re, 0.0)
                } else {
                    za + zb
                };
                Value::approx(sum, sa.max(sb).max(za.norm()).max(zb.norm()))
            }
            _ => Value::Undefined,
        },
    }
}

fn mul(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Exact(a), Value::Exact(b)) => Value::Exact(a * b),
        (a, b) => match (a.complex(), b.complex()) {
            (Some((za, sa)), Some((zb, sb))) => {
                let product = if za.im == 0.0 && zb.im == 0.0 {
                    Complex64::new(za.re * zb.re, 0.0)
                } else {
                    za * zb
                };
                Value::approx(product, (sa * zb.norm()).max(sb * za.norm()))
            }
            _ => Value::Undefined,
        },
    }
}

fn pow(base: Value, exp: Value) -> Value {
    if let (Value::Exact(b), Value::Exact(e)) = (&base, &exp) {
        if let Some(exact) = exact_pow(b, e) {
            return exact;
        }
    }
    let (Some((zb, sb)), Some((ze, _))) = (base.complex(), exp.complex()) else {
        return Value::Undefined;
    };
    if zb == Complex64::zero() {
        return if ze.re > 0.0 {
            Value::real(0.0)
        } else if ze == Complex64::zero() {
            Value::real(1.0)
        } else {
            Value::Undefined
        };
    }
    let relative_error = if zb.norm() > 0.0 && zb.norm().is_finite() {
        (sb / zb.norm()).clamp(1.0, 1e6)
    } else {
        1.0
    };
    let z = if zb.im == 0.0 && ze.im == 0.0 && (zb.re > 0.0 || ze.re.fract() == 0.0) {
        Complex64::new(zb.re.powf(ze.re), 0.0)
    } else {
        (ze * zb.ln()).exp()
    };
    Value::approx(z, z.norm() * relative_error * ze.norm().max(1.0))
}

/// Rational powers that stay rational: integer exponents, and roots of perfect powers.
fn exact_pow(base: &BigRational, exp: &BigRational) -> Option<Value> {
    let numer = exp.numer().to_i64()?;
    let denom = exp.denom().to_u32()?;
    if base.is_zero() {
        return Some(match numer.signum() {
            1 => Value::Exact(BigRational::zero()),
            0 => Value::Exact(BigRational::one()),
            _ => Value::Undefined,
        });
    }
    if bits(base).saturating_mul(numer.unsigned_abs()) / u64::from(denom) > MAX_EXACT_BITS {
        return None;
    }
    let root = if denom == 1 {
        base.clone()
    } else {
        if base.is_negative() || denom > 64 {
            return None;
        }
        let n = base.numer().nth_root(denom);
        let d = base.denom().nth_root(denom);
        if n.pow(denom) != *base.numer() || d.pow(denom) != *base.denom() {
            return None;
        }
        BigRational::new(n, d)
    };
    let power = num_traits::pow(root, usize::try_from(numer.unsigned_abs()).ok()?);
    Some(Value::Exact(if numer < 0 { power.recip() } else { power }))
}

/// Symbol values at one evaluation point.
pub(crate) struct Point(pub(crate) u64);

impl Point {
    /// A pseudo-random complex number for `name` at this point, away from zero and from the
    /// real axis, in all four quadrants across points.
    fn symbol(&self, name: &str) -> Complex64 {
        let mut state = self.0 ^ 0x9E37_79B9_7F4A_7C15;
        for byte in name.bytes() {
            state = (state ^ u64::from(byte)).wrapping_mul(0x1000_0000_01B3);
        }
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        };
        let magnitude = 0.6 + 0.8 * next();
        let angle = std::f64::consts::TAU * (0.05 + 0.9 * next());
        Complex64::from_polar(magnitude, angle + 0.3 * self.0 as f64)
    }
}

/// The value of `expr` at `point`.
pub(crate) fn eval(expr: &Expr, point: &Point, budget: &Budget) -> Result<Value, OutOfTime> {
    budget.check()?;
    Ok(match expr {
        Expr::Rational(r) => Value::Exact(r.clone()),
        Expr::Float(f) => Value::real(*f),
        Expr::Symbol(name) => {
            let z = point.symbol(name);
            Value::approx(z, z.norm())
        }
        Expr::Constant(c) => match c {
            Constant::Infinity => Value::real(f64::INFINITY),
            Constant::Pi => Value::real(std::f64::consts::PI),
            Constant::E => Value::real(std::f64::consts::E),
            Constant::I => Value::approx(Complex64::i(), 1.0),
            Constant::ComplexInfinity | Constant::NaN => Value::Undefined,
        },
        Expr::Add(terms) => {
            let mut sum = Value::Exact(BigRational::zero());
            for term in terms {
                sum = add(sum, eval(term, point, budget)?);
            }
            sum
        }
        Expr::Mul(factors) => {
            let mut product = Value::Exact(BigRational::one());
            for factor in factors {
                product = mul(product, eval(factor, point, budget)?);
            }
            product
        }
        Expr::Pow(base, exp) => pow(eval(base, point, budget)?, eval(exp, point, budget)?),
        Expr::Call(func, args) => {
            let mut values = Vec::with_capacity(args.len());
            for arg in args {
                values.push(eval(arg, point, budget)?);
            }
            call(*func, values)
        }
        Expr::Applied(name, args) => {
            let mut values = Vec::with_capacity(args.len());
            for arg in args {
                values.push(eval(arg, point, budget)?);
            }
            applied(name, &values)
        }
    })
}

/// An undefined function's value: a fixed smooth function of its arguments, chosen by its
/// name, so that `f(2x)` equals `f(x+x)` and differs from `g(2x)` and `f(x)`.
fn applied(name: &str, args: &[Value]) -> Value {
    let seed = Point(name.len() as u64 * 7919 + args.len() as u64);
    let a = seed.symbol(name);
    let mut sum = seed.symbol("");
    for (i, arg) in args.iter().enumerate() {
        let Some((z, _)) = arg.complex() else {
            return Value::Undefined;
        };
        sum += z * Point(i as u64 + 1).symbol(name);
    }
    let z = a * sum.sin() + sum * 0.5;
    Value::approx(z, z.norm())
}

fn call(func: Func, args: Vec<Value>) -> Value {
    let mut args = args.into_iter();
    let Some(x) = args.next() else {
        return Value::Undefined;
    };
    match func {
        Func::Abs => match x {
            Value::Exact(r) => Value::Exact(r.abs()),
            other => match other.complex() {
                Some((z, _)) => Value::real(z.norm()),
                None => Value::Undefined,
            },
        },
        Func::Floor | Func::Ceiling => match x {
            Value::Exact(r) => Value::Exact(if func == Func::Floor {
                r.floor()
            } else {
                r.ceil()
            }),
            other => match other.complex() {
                Some((z, _)) if func == Func::Floor => {
                    Value::approx(Complex64::new(z.re.floor(), z.im.floor()), z.norm())
                }
                Some((z, _)) => Value::approx(Complex64::new(z.re.ceil(), z.im.ceil()), z.norm()),
                None => Value::Undefined,
            },
        },
        Func::Conjugate => match x {
            Value::Exact(r) => Value::Exact(r),
            other => match other.complex() {
                Some((z, scale)) => Value::approx(z.conj(), scale),
                None => Value::Undefined,
            },
        },
        Func::Factorial => factorial(x),
        Func::Binomial => {
            let Some(k) = args.next() else {
                return Value::Undefined;
            };
            binomial(x, k)
        }
        Func::Log => {
            let ln_x = transcendental(Func::Log, &x);
            match args.next() {
                None => ln_x,
                Some(base) => {
                    let ln_base = transcendental(Func::Log, &base);
                    match (ln_x.complex(), ln_base.complex()) {
                        (Some(_), Some((b, _))) if b == Complex64::zero() => Value::Undefined,
                        (Some((a, sa)), Some((b, _))) => {
                            let z = if a.im == 0.0 && b.im == 0.0 {
                                Complex64::new(a.re / b.re, 0.0)
                            } else {
                                a / b
                            };
                            Value::approx(z, sa / b.norm())
                        }
                        _ => Value::Undefined,
                    }
                }
            }
        }
        _ => transcendental(func, &x),
    }
}

/// Trigonometric, hyperbolic, exponential and logarithmic functions, real where sympy's value
/// is real and the principal complex branch elsewhere.
fn transcendental(func: Func, x: &Value) -> Value {
    if let Value::Exact(r) = x {
        // The few exact values sympy evaluates that matter here: sin(0), log(1), exp(0), ...
        if r.is_zero() {
            match func {
                Func::Sin
                | Func::Tan
                | Func::Asin
                | Func::Atan
                | Func::Sinh
                | Func::Tanh
                | Func::Asinh
                | Func::Atanh => return Value::Exact(BigRational::zero()),
                Func::Cos | Func::Sec | Func::Cosh | Func::Exp => {
                    return Value::Exact(BigRational::one())
                }
                Func::Log | Func::Csc | Func::Cot => return Value::Undefined,
                _ => {}
            }
        }
        if r.is_one() && func == Func::Log {
            return Value::Exact(BigRational::zero());
        }
    }
    let Some((z, _)) = x.complex() else {
        return Value::Undefined;
    };
    let real = z.im == 0.0;
    let t = z.re;
    let result = match func {
        Func::Sin if real => Complex64::new(t.sin(), 0.0),
        Func::Cos if real => Complex64::new(t.cos(), 0.0),
        Func::Tan if real => Complex64::new(t.tan(), 0.0),
        Func::Csc if real => Complex64::new(1.0 / t.sin(), 0.0),
        Func::Sec if real => Complex64::new(1.0 / t.cos(), 0.0),
        Func::Cot if real => Complex64::new(1.0 / t.tan(), 0.0),
        Func::Asin if real && t.abs() <= 1.0 => Complex64::new(t.asin(), 0.0),
        Func::Acos if real && t.abs() <= 1.0 => Complex64::new(t.acos(), 0.0),
        Func::Atan if real => Complex64::new(t.atan(), 0.0),
        Func::Acsc if real && t.abs() >= 1.0 => Complex64::new((1.0 / t).asin(), 0.0),
        Func::Asec if real && t.abs() >= 1.0 => Complex64::new((1.0 / t).acos(), 0.0),
        Func::Acot if real => Complex64::new((1.0 / t).atan(), 0.0),
        Func::Sinh if real => Complex64::new(t.sinh(), 0.0),
        Func::Cosh if real => Complex64::new(t.cosh(), 0.0),
        Func::Tanh if real => Complex64::new(t.tanh(), 0.0),
        Func::Asinh if real => Complex64::new(t.asinh(), 0.0),
        Func::Acosh if real && t >= 1.0 => Complex64::new(t.acosh(), 0.0),
        Func::Atanh if real && t.abs() < 1.0 => Complex64::new(t.atanh(), 0.0),
        Func::Exp if real => Complex64::new(t.exp(), 0.0),
        Func::Log if real && t > 0.0 => Complex64::new(t.ln(), 0.0),
        Func::Log if z == Complex64::zero() => return Value::Undefined,
        Func::Sin => z.sin(),
        Func::Cos => z.cos(),
        Func::Tan => z.tan(),
        Func::Csc => z.sin().inv(),
        Func::Sec => z.cos().inv(),
        Func::Cot => z.tan().inv(),
        Func::Asin => z.asin(),
        Func::Acos => z.acos(),
        Func::Atan => z.atan(),
        Func::Acsc => z.inv().asin(),
        Func::Asec => z.inv().acos(),
        Func::Acot => z.inv().atan(),
        Func::Sinh => z.sinh(),
        Func::Cosh => z.cosh(),
        Func::Tanh => z.tanh(),
        Func::Asinh => z.asinh(),
        Func::Acosh => z.acosh(),
        Func::Atanh => z.atanh(),
        Func::Exp => z.exp(),
        Func::Log => z.ln(),
        Func::Abs
        | Func::Floor
        | Func::Ceiling
        | Func::Factorial
        | Func::Binomial
        | Func::Conjugate => return Value::Undefined,
    };
    // An infinite result of a finite argument is an overflow (`\cos(5040y)` off the real
    // line), kept as such; NaN becomes undefined.
    Value::approx(result, result.norm())
}

/// Factorials exact for small non-negative integers, `zoo` for negative ones, `Γ(x + 1)`
/// otherwise.
fn factorial(x: Value) -> Value {
    const MAX_EXACT: u64 = 2000;
    if let Value::Exact(r) = &x {
        if r.is_integer() {
            if r.is_negative() {
                return Value::Undefined;
            }
            if let Some(n) = r.to_integer().to_u64().filter(|&n| n <= MAX_EXACT) {
                let mut product = BigInt::one();
                for k in 2..=n {
                    product *= k;
                }
                return Value::Exact(BigRational::from_integer(product));
            }
        }
    }
    match x.complex() {
        // sympy: factorial(oo) is oo.
        Some((z, _)) if z.im == 0.0 && z.re == f64::INFINITY => Value::real(f64::INFINITY),
        Some((z, _)) => match gamma(z + 1.0) {
            Some(g) => Value::approx(g, g.norm()),
            None => Value::Undefined,
        },
        None => Value::Undefined,
    }
}

fn binomial(n: Value, k: Value) -> Value {
    if let (Value::Exact(n), Value::Exact(k)) = (&n, &k) {
        if n.is_integer() && k.is_integer() {
            if let (Some(n), Some(k)) = (n.to_integer().to_i64(), k.to_integer().to_i64()) {
                if k < 0 || (n >= 0 && k > n) {
                    return Value::Exact(BigRational::zero());
                }
                if k <= 2000 {
                    let mut result = BigRational::one();
                    for i in 0..k {
                        result = result * BigRational::from_integer(BigInt::from(n - i))
                            / BigRational::from_integer(BigInt::from(i + 1));
                    }
                    return Value::Exact(result);
                }
            }
        }
    }
    let (Some((zn, _)), Some((zk, _))) = (n.complex(), k.complex()) else {
        return Value::Undefined;
    };
    match (gamma(zn + 1.0), gamma(zk + 1.0), gamma(zn - zk + 1.0)) {
        (Some(a), Some(b), Some(c)) => {
            let z = a / (b * c);
            Value::approx(z, z.norm())
        }
        _ => Value::Undefined,
    }
}

/// The gamma function by Lanczos' approximation (g = 7, n = 9), reflected left of 1/2; `None`
/// at the poles.
fn gamma(z: Complex64) -> Option<Complex64> {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if z.im == 0.0 && z.re <= 0.0 && z.re.fract() == 0.0 {
        return None;
    }
    if z.re < 0.5 {
        let pi = std::f64::consts::PI;
        let sin = (z * pi).sin();
        return Some(Complex64::new(pi, 0.0) / (sin * gamma(1.0 - z)?));
    }
    let z = z - 1.0;
    let mut x = Complex64::new(COEFFICIENTS[0], 0.0);
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        x += *c / (z + i as f64);
    }
    let t = z + G + 0.5;
    let value = (2.0 * std::f64::consts::PI).sqrt() * t.powc(z + 0.5) * (-t).exp() * x;
    Some(if z.im == 0.0 {
        Complex64::new(value.re, 0.0)
    } else {
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn value(expr: &Expr) -> Value {
        eval(expr, &Point(0), &Budget::new(Duration::from_secs(1))).expect("no timeout")
    }

    fn rational(n: i64, d: i64) -> Expr {
        Expr::Rational(BigRational::new(BigInt::from(n), BigInt::from(d)))
    }

    #[test]
    fn rational_arithmetic_is_exact() {
        let sum = Expr::Add(vec![rational(1, 3), rational(1, 6)]);
        assert!(
            matches!(value(&sum), Value::Exact(r) if r == BigRational::new(1.into(), 2.into()))
        );
        let root = Expr::Pow(Box::new(rational(8, 27)), Box::new(rational(2, 3)));
        assert!(
            matches!(value(&root), Value::Exact(r) if r == BigRational::new(4.into(), 9.into()))
        );
    }

    #[test]
    fn cancelled_irrationals_are_the_same_as_zero_but_tiny_rationals_are_not() {
        let sqrt2 = Expr::Pow(Box::new(Expr::integer(2)), Box::new(rational(1, 2)));
        let cancelled = Expr::Add(vec![
            Expr::Pow(Box::new(sqrt2), Box::new(Expr::integer(2))),
            Expr::integer(-2),
        ]);
        assert!(value(&cancelled).same(&value(&Expr::integer(0))));
        let tiny = Expr::Pow(Box::new(Expr::integer(10)), Box::new(Expr::integer(-20)));
        assert!(!value(&tiny).same(&value(&Expr::integer(0))));
    }

    #[test]
    fn negative_bases_take_the_principal_complex_root() {
        let cube_root = Expr::Pow(Box::new(Expr::integer(-8)), Box::new(rational(1, 3)));
        assert_eq!(value(&cube_root).to_real(), None);
    }

    #[test]
    fn factorials_and_gamma_agree() {
        let five = Expr::Call(Func::Factorial, vec![Expr::integer(5)]);
        assert_eq!(value(&five).to_real(), Some(120.0));
        let half = Expr::Call(Func::Factorial, vec![Expr::Float(0.5)]);
        let expected = std::f64::consts::PI.sqrt() / 2.0;
        assert!((value(&half).to_real().expect("real") - expected).abs() < 1e-12);
        let pole = Expr::Call(Func::Factorial, vec![Expr::integer(-1)]);
        assert!(matches!(value(&pole), Value::Undefined));
    }
}
