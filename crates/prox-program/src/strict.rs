//! The strict reader: each line is one Python function call, read with a real tokenizer.
//!
//! Grammar, per line (surrounding whitespace ignored):
//!
//! ```text
//! line     := "" | "```" any* | "#" any* | call ws* ("#" any*)?
//! call     := name ws* "(" ws* (argument (ws* "," ws* argument)* (ws* ",")?)? ws* ")"
//! argument := (name ws* "=" ws*)? value
//! value    := string (ws* string)* | ("+" | "-")? ws* digits | "True" | "False"
//! string   := "'" … "'" | '"' … '"'   (Python escapes)
//! digits   := [0-9] ("_"? [0-9])*     (leading zeros allowed)
//! ```

use crate::program::{Call, LineKind, ProgramLine};

/// The lines of a program, read strictly.
pub(crate) fn lines(program: &str) -> impl Iterator<Item = ProgramLine> + '_ {
    program
        .split('\n')
        .enumerate()
        .map(|(index, line)| read_line(index + 1, line))
}

fn read_line(number: usize, line: &str) -> ProgramLine {
    let line = line.trim();
    if line.is_empty() || line.starts_with("```") {
        return ProgramLine::new(number, LineKind::Blank);
    }
    if line.starts_with('#') {
        return ProgramLine::new(number, LineKind::Comment);
    }
    match Cursor::new(line).call().and_then(bind) {
        Ok(kind) => ProgramLine::new(number, kind),
        Err(reason) => ProgramLine::error(number, reason),
    }
}

/// An argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
        }
    }
}

#[derive(Debug)]
struct Argument<'a> {
    name: Option<&'a str>,
    value: Value,
}

#[derive(Debug)]
struct ParsedCall<'a> {
    name: &'a str,
    arguments: Vec<Argument<'a>>,
}

/// Names and messages quote the program; keep them short whatever the program holds.
fn shown(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, expected: char) -> bool {
        let found = self.peek() == Some(expected);
        if found {
            self.at += expected.len_utf8();
        }
        found
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn name(&mut self) -> Option<&'a str> {
        let rest = self.rest();
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if c == '_' || c.is_ascii_alphabetic() => {}
            _ => return None,
        }
        let len = chars
            .find(|&(_, c)| !(c == '_' || c.is_ascii_alphanumeric()))
            .map_or(rest.len(), |(i, _)| i);
        self.at += len;
        Some(&rest[..len])
    }

    fn call(mut self) -> Result<ParsedCall<'a>, String> {
        let Some(name) = self.name() else {
            return Err(format!(
                "expected a function call, found `{}`",
                shown(self.rest())
            ));
        };
        self.skip_space();
        if !self.eat('(') {
            return Err(format!("expected `(` after `{}`", shown(name)));
        }
        let mut arguments = Vec::new();
        loop {
            self.skip_space();
            if self.eat(')') {
                break;
            }
            arguments.push(self.argument()?);
            self.skip_space();
            if self.eat(')') {
                break;
            }
            if !self.eat(',') {
                return Err(match self.peek() {
                    None => format!("`{}(` is not closed", shown(name)),
                    Some(_) => format!("expected `,` or `)`, found `{}`", shown(self.rest())),
                });
            }
        }
        self.skip_space();
        if !(self.rest().is_empty() || self.rest().starts_with('#')) {
            return Err(format!(
                "unexpected text after the call: `{}`",
                shown(self.rest())
            ));
        }
        Ok(ParsedCall { name, arguments })
    }

    fn argument(&mut self) -> Result<Argument<'a>, String> {
        let before = self.at;
        if let Some(name) = self.name() {
            self.skip_space();
            if self.rest().starts_with('=') && !self.rest().starts_with("==") {
                self.at += 1;
                self.skip_space();
                let value = self.value()?;
                return Ok(Argument {
                    name: Some(name),
                    value,
                });
            }
            self.at = before;
        }
        let value = self.value()?;
        Ok(Argument { name: None, value })
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.peek() {
            Some(quote @ ('"' | '\'')) => {
                let mut text = String::new();
                self.bump();
                self.string(quote, &mut text)?;
                // Adjacent literals concatenate, as in Python: "a" 'b' is "ab".
                loop {
                    let before = self.at;
                    self.skip_space();
                    match self.peek() {
                        Some(quote @ ('"' | '\'')) => {
                            self.bump();
                            self.string(quote, &mut text)?;
                        }
                        _ => {
                            self.at = before;
                            break;
                        }
                    }
                }
                Ok(Value::Str(text))
            }
            Some('+' | '-' | '0'..='9') => self.integer().map(Value::Int),
            _ => {
                let before = self.at;
                match self.name() {
                    Some("True") => Ok(Value::Bool(true)),
                    Some("False") => Ok(Value::Bool(false)),
                    Some(other) => Err(format!(
                        "`{}` is not a value (strings are quoted)",
                        shown(other)
                    )),
                    None => {
                        self.at = before;
                        Err(match self.peek() {
                            None => "expected a value, found the end of the line".to_owned(),
                            Some(_) => format!("expected a value, found `{}`", shown(self.rest())),
                        })
                    }
                }
            }
        }
    }

    fn integer(&mut self) -> Result<i64, String> {
        let negative = match self.peek() {
            Some('-') => true,
            Some('+') => false,
            _ => false,
        };
        if matches!(self.peek(), Some('+' | '-')) {
            self.bump();
            self.skip_space();
        }
        let start = self.at;
        let mut magnitude: Option<i128> = Some(0);
        let mut after_underscore = true;
        while let Some(c) = self.peek() {
            match c {
                '0'..='9' => {
                    let digit = i128::from(c as u8 - b'0');
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(digit));
                    after_underscore = false;
                }
                '_' if !after_underscore => after_underscore = true,
                _ => break,
            }
            self.bump();
        }
        let digits = &self.text[start..self.at];
        let trailing = self
            .peek()
            .is_some_and(|c| c == '_' || c == '.' || c.is_alphanumeric());
        if digits.is_empty() || after_underscore || trailing {
            let end = self
                .rest()
                .find([',', ')', ' '])
                .unwrap_or(self.rest().len());
            return Err(format!(
                "not an integer: `{}`",
                shown(&self.text[start..self.at + end])
            ));
        }
        let value = magnitude.map(|m| if negative { -m } else { m });
        value
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| format!("integer out of range: `{}`", shown(digits)))
    }

    /// The rest of a string literal after its opening quote, appended to `out`.
    fn string(&mut self, quote: char, out: &mut String) -> Result<(), String> {
        loop {
            let rest = self.rest();
            let Some(stop) = rest.find([quote, '\\']) else {
                return Err("the string is not closed on its line".to_owned());
            };
            out.push_str(&rest[..stop]);
            self.at += stop;
            if self.bump() == Some(quote) {
                return Ok(());
            }
            self.escape(out)?;
        }
    }

    /// One escape sequence after its backslash, as Python reads it in a non-raw string.
    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let Some(c) = self.bump() else {
            return Err("the string is not closed on its line".to_owned());
        };
        let simple = match c {
            '\\' => Some('\\'),
            '\'' => Some('\''),
            '"' => Some('"'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            _ => None,
        };
        if let Some(escaped) = simple {
            out.push(escaped);
            return Ok(());
        }
        let code = match c {
            'x' => self.hex(2)?,
            'u' => self.hex(4)?,
            'U' => self.hex(8)?,
            '0'..='7' => {
                let mut code = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(digit) => {
                            code = code * 8 + digit;
                            self.bump();
                        }
                        None => break,
                    }
                }
                code
            }
            'N' => return Err("`\\N{…}` escapes are not supported".to_owned()),
            other => {
                // Python keeps an unknown escape as it is written.
                out.push('\\');
                out.push(other);
                return Ok(());
            }
        };
        let escaped = char::from_u32(code)
            .ok_or_else(|| format!("`\\{c}` escape {code:#x} is not a character"))?;
        out.push(escaped);
        Ok(())
    }

    fn hex(&mut self, digits: usize) -> Result<u32, String> {
        let rest = self.rest();
        let hex = rest
            .get(..digits)
            .filter(|hex| hex.len() == digits && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some(hex) = hex else {
            return Err(format!("an escape needs {digits} hex digits"));
        };
        self.at += digits;
        u32::from_str_radix(hex, 16).map_err(|_| format!("bad hex escape `{hex}`"))
    }
}

/// Turns a call into what it asks for, checking its arguments.
fn bind(call: ParsedCall<'_>) -> Result<LineKind, String> {
    let ParsedCall { name, arguments } = call;
    let mut seen_keyword = false;
    for argument in &arguments {
        match argument.name {
            Some(_) => seen_keyword = true,
            None if seen_keyword => {
                return Err("a positional argument follows a keyword argument".to_owned())
            }
            None => {}
        }
    }
    match name {
        "remove_lines" => remove_lines(arguments),
        "normalize" => normalize(arguments),
        "drop_doc" | "keep_doc" | "untouch_doc" | "keep_chunk" | "skip_chunk" => {
            if !arguments.is_empty() {
                return Err(format!("{name}() takes no arguments"));
            }
            Ok(match name {
                "drop_doc" => LineKind::Call(Call::DropDoc),
                "keep_doc" => LineKind::Call(Call::KeepDoc),
                _ => LineKind::NoOp(name.to_owned()),
            })
        }
        other => Err(format!(
            "unknown function `{}` (known: remove_lines, normalize, drop_doc, keep_doc, \
             untouch_doc, keep_chunk, skip_chunk)",
            shown(other)
        )),
    }
}

/// Puts each argument in its parameter slot: positional ones in order, keyword ones by name.
fn slots<const N: usize>(
    function: &str,
    parameters: [&[&str]; N],
    arguments: Vec<Argument<'_>>,
) -> Result<[Option<Value>; N], String> {
    let mut slots: [Option<Value>; N] = std::array::from_fn(|_| None);
    for (position, argument) in arguments.into_iter().enumerate() {
        let slot = match argument.name {
            None if position < N => position,
            None => return Err(format!("{function}() takes at most {N} arguments")),
            Some(name) => parameters
                .iter()
                .position(|names| names.contains(&name))
                .ok_or_else(|| format!("{function}() has no argument `{}`", shown(name)))?,
        };
        if slots[slot].is_some() {
            return Err(format!(
                "{function}() got `{}` twice",
                parameters[slot].first().copied().unwrap_or_default()
            ));
        }
        slots[slot] = Some(argument.value);
    }
    Ok(slots)
}

fn remove_lines(arguments: Vec<Argument<'_>>) -> Result<LineKind, String> {
    let [start, end, all] = slots(
        "remove_lines",
        [&["start", "line_start"], &["end", "line_end"], &["all"]],
        arguments,
    )?;
    let integer = |value: Option<Value>, what: &str| match value {
        Some(Value::Int(n)) => Ok(n),
        Some(other) => Err(format!(
            "remove_lines(): `{what}` must be an integer, not {}",
            other.type_name()
        )),
        None => Err(format!("remove_lines() needs `{what}`")),
    };
    match all {
        Some(Value::Bool(true)) if start.is_none() && end.is_none() => {
            Ok(LineKind::Call(Call::RemoveAllLines))
        }
        Some(Value::Bool(true)) => {
            Err("remove_lines(all=True) takes no other arguments".to_owned())
        }
        Some(Value::Bool(false)) | None => Ok(LineKind::Call(Call::RemoveLines {
            start: integer(start, "start")?,
            end: integer(end, "end")?,
        })),
        Some(other) => Err(format!(
            "remove_lines(): `all` must be True or False, not {}",
            other.type_name()
        )),
    }
}

fn normalize(arguments: Vec<Argument<'_>>) -> Result<LineKind, String> {
    let [source, target] = slots("normalize", [&["source_str"], &["target_str"]], arguments)?;
    let string = |value: Option<Value>, what: &str| match value {
        Some(Value::Str(text)) if text.contains('\n') => Err(format!(
            "normalize(): `{what}` holds a line break, which would renumber the lines"
        )),
        Some(Value::Str(text)) => Ok(Some(text)),
        Some(other) => Err(format!(
            "normalize(): `{what}` must be a string, not {}",
            other.type_name()
        )),
        None => Ok(None),
    };
    let source =
        string(source, "source_str")?.ok_or_else(|| "normalize() needs `source_str`".to_owned())?;
    let target = string(target, "target_str")?;
    if source.is_empty() {
        return Err("normalize(): `source_str` is empty".to_owned());
    }
    if source == " " {
        return Ok(LineKind::Ignored(
            "normalize of a single space: skipped, as the reference skips it",
        ));
    }
    Ok(LineKind::Call(Call::Normalize { source, target }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> Result<LineKind, String> {
        let line = read_line(1, line);
        match line.kind {
            LineKind::Error => Err(line.errors.join("; ")),
            kind => Ok(kind),
        }
    }

    fn string(literal: &str) -> Result<String, String> {
        let mut cursor = Cursor::new(literal);
        match cursor.value()? {
            Value::Str(text) if cursor.rest().is_empty() => Ok(text),
            other => Err(format!("{other:?}, then {:?}", cursor.rest())),
        }
    }

    #[test]
    fn reads_python_escapes() {
        assert_eq!(string(r#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(string(r"'it\'s'").unwrap(), "it's");
        assert_eq!(string(r#""\\""#).unwrap(), "\\");
        assert_eq!(string(r#""\t\r\n""#).unwrap(), "\t\r\n");
        assert_eq!(string(r#""\u00e9\xe9\U0001F600""#).unwrap(), "éé😀");
        assert_eq!(string(r#""\101\0""#).unwrap(), "A\0");
        assert_eq!(string(r#""\d""#).unwrap(), "\\d");
        assert_eq!(string(r#""a" 'b'"#).unwrap(), "ab");
    }

    #[test]
    fn refuses_broken_escapes() {
        for literal in [
            r#""\x4""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\U00110000""#,
            r#""\N{DASH}""#,
            r#""a\"#,
        ] {
            assert!(string(literal).is_err(), "{literal}");
        }
    }

    #[test]
    fn reads_integers() {
        let read = |text: &str| Cursor::new(text).integer();
        assert_eq!(read("42"), Ok(42));
        assert_eq!(read("-3"), Ok(-3));
        assert_eq!(read("- 3"), Ok(-3));
        assert_eq!(read("007"), Ok(7));
        assert_eq!(read("1_000"), Ok(1000));
        assert_eq!(read("-9223372036854775808"), Ok(i64::MIN));
        assert!(read("9223372036854775808").is_err());
        assert!(read(&"9".repeat(100)).is_err());
        for bad in ["1__0", "1_", "_1", "3.5", "3x", "-", "+x"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn binds_positional_and_keyword_arguments() {
        let range = Ok(LineKind::Call(Call::RemoveLines { start: 3, end: 7 }));
        assert_eq!(kind("remove_lines(3, 7)"), range);
        assert_eq!(kind("remove_lines(3, end=7)"), range);
        assert_eq!(kind("remove_lines(line_end=7, line_start=3)"), range);
        assert_eq!(kind("remove_lines ( start = 3 , end = 7 , ) # x"), range);
        assert!(kind("remove_lines(start=3, 7)").is_err());
        assert!(kind("remove_lines(3, start=3)").is_err());
        assert!(kind("remove_lines(3, 7, 9, 1)").is_err());
        assert!(kind("remove_lines(start=3)").is_err());
    }

    #[test]
    fn refuses_text_after_the_call() {
        assert!(kind("drop_doc() drop_doc()").is_err());
        assert!(kind("drop_doc();").is_err());
        assert!(kind("drop_doc(").is_err());
    }
}
