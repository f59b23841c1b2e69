//! Chat templates: the reference's Llama-2 format built in, and any Hugging Face Jinja chat
//! template (from a `tokenizer_config.json` or a GGUF's `tokenizer.chat_template`).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, State};

use crate::Error;

/// The Llama-2 chat template as Hugging Face ships it (`meta-llama/Llama-2-7b-chat-hf`,
/// which the reference's document stage uses; transformers' default Llama template renders
/// ProX's two messages the same way). [`ChatTemplate::Llama2`] renders it natively.
pub const LLAMA2_CHAT_TEMPLATE: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// The special-token strings a template may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateTokens {
    pub bos_token: String,
    pub eos_token: String,
}

/// A rendered prompt and where the user's content sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// The byte range of the user message's content in `text` (after the template's own
    /// changes, such as `.strip()`), when the template includes it verbatim.
    pub content: Option<Range<usize>>,
}

/// How a system and a user message become one prompt string.
#[derive(Clone)]
pub enum ChatTemplate {
    /// `<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]`, with Python's `str.strip()`
    /// applied to everything between `[INST] ` and ` [/INST]`, as [`LLAMA2_CHAT_TEMPLATE`].
    Llama2,
    /// A Hugging Face Jinja chat template.
    Jinja(JinjaTemplate),
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Llama2 => f.write_str("Llama2"),
            Self::Jinja(t) => f.debug_tuple("Jinja").field(&t.source()).finish(),
        }
    }
}

impl ChatTemplate {
    /// Compiles a Jinja chat template.
    pub fn jinja(source: impl Into<String>) -> Result<Self, Error> {
        JinjaTemplate::new(source).map(Self::Jinja)
    }

    /// Renders a system message (if any) and a user message, with the generation prompt.
    pub fn render(
        &self,
        system: Option<&str>,
        user: &str,
        tokens: &TemplateTokens,
    ) -> Result<Rendered, Error> {
        match self {
            Self::Llama2 => Ok(render_llama2(system, user, &tokens.bos_token)),
            Self::Jinja(template) => template.render(system, user, tokens),
        }
    }
}

/// Python's `str.isspace()`: Unicode whitespace plus the separators U+001C..U+001F.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` without arguments.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

fn render_llama2(system: Option<&str>, user: &str, bos: &str) -> Rendered {
    let mut joined = match system {
        Some(system) => format!("<<SYS>>\n{system}\n<</SYS>>\n\n"),
        None => String::new(),
    };
    let user_start = joined.len();
    joined.push_str(user);
    // Strip the concatenation as the template does, and follow where the user part went.
    let start = joined.len() - joined.trim_start_matches(is_python_space).len();
    let end = joined.trim_end_matches(is_python_space).len().max(start);
    let opening = format!("{bos}[INST] ");
    let mut text = String::with_capacity(opening.len() + (end - start) + 8);
    text.push_str(&opening);
    text.push_str(&joined[start..end]);
    text.push_str(" [/INST]");
    let content_start = start.max(user_start).min(end);
    let to_text = |offset: usize| opening.len() + offset - start;
    Rendered {
        content: Some(to_text(content_start)..to_text(end)),
        text,
    }
}

/// A compiled Hugging Face chat template, rendered as transformers renders them: Jinja with
/// `trim_blocks` and `lstrip_blocks`, Python string and dict methods (`.strip()`,
/// `.items()`, …), `raise_exception`, and a `tojson` that writes like Python's `json.dumps`.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
}

const TEMPLATE_NAME: &str = "chat_template";
/// Stands in for the user content to find where a template puts it.
const SENTINEL: &str = "\u{e000}prox-user-content\u{e001}";

impl JinjaTemplate {
    pub fn new(source: impl Into<String>) -> Result<Self, Error> {
        let source: String = source.into();
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| Error::Template(e.to_string()))?,
        );
        env.set_unknown_method_callback(python_methods);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| Error::Template(describe(&e)))?;
        Ok(Self {
            env: Arc::new(env),
            source: source.into(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the messages to a string.
    pub fn render_text(
        &self,
        system: Option<&str>,
        user: &str,
        tokens: &TemplateTokens,
    ) -> Result<String, Error> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = system {
            messages.push(("system", system));
        }
        messages.push(("user", user));
        self.render_messages(&messages, tokens, true)
    }

    /// Renders a whole conversation of `(role, content)` messages (a chat completion's
    /// `messages`), as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=…)` does.
    pub fn render_messages(
        &self,
        messages: &[(&str, &str)],
        tokens: &TemplateTokens,
        add_generation_prompt: bool,
    ) -> Result<String, Error> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|(role, content)| {
                Value::from_pairs([
                    ("role", Value::from(*role)),
                    ("content", Value::from(*content)),
                ])
            })
            .collect();
        let context = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("bos_token", Value::from(tokens.bos_token.as_str())),
            ("eos_token", Value::from(tokens.eos_token.as_str())),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ]);
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::Template(describe(&e)))?;
        template
            .render(context)
            .map_err(|e| Error::Template(describe(&e)))
    }

    fn render(
        &self,
        system: Option<&str>,
        user: &str,
        tokens: &TemplateTokens,
    ) -> Result<Rendered, Error> {
        let text = self.render_text(system, user, tokens)?;
        // Render once more with a sentinel for the content: what surrounds it there, and
        // surrounds the real render too, is the template's; the rest is the content.
        let framed = self.render_text(system, SENTINEL, tokens)?;
        let content = framed.split_once(SENTINEL).and_then(|(before, after)| {
            (!after.contains(SENTINEL)
                && text.len() >= before.len() + after.len()
                && text.starts_with(before)
                && text.ends_with(after))
            .then(|| before.len()..text.len() - after.len())
        });
        Ok(Rendered { text, content })
    }
}

fn describe(error: &minijinja::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// Python string methods with Python's notion of whitespace, then minijinja-contrib's.
fn python_methods(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, minijinja::Error> {
    if let (Some(s), []) = (value.as_str(), args) {
        match method {
            "strip" => return Ok(Value::from(python_strip(s))),
            "lstrip" => return Ok(Value::from(s.trim_start_matches(is_python_space))),
            "rstrip" => return Ok(Value::from(s.trim_end_matches(is_python_space))),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `tojson` as transformers defines it: `json.dumps(value, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value).map_err(|e| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot serialize: {e}"),
        )
    })?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        _ if indent.is_some() => (",".into(), ": ".into()),
        _ => (", ".into(), ": ".into()),
    };
    let style = PyJson {
        indent,
        item,
        key,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&json, 0, &mut out);
    Ok(Value::from(out))
}

struct PyJson {
    indent: Option<usize>,
    item: String,
    key: String,
    sort_keys: bool,
}

impl PyJson {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent * depth));
        }
    }

    fn write(&self, value: &serde_json::Value, depth: usize, out: &mut String) {
        use serde_json::Value as J;
        match value {
            J::Array(items) if !items.is_empty() => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push(']');
            }
            J::Object(map) if !map.is_empty() => {
                let mut entries: Vec<_> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item);
                    }
                    self.newline(depth + 1, out);
                    out.push_str(&J::String(key.clone()).to_string());
                    out.push_str(&self.key);
                    self.write(item, depth + 1, out);
                }
                self.newline(depth, out);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TemplateTokens {
        TemplateTokens {
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        }
    }

    fn both(system: Option<&str>, user: &str) -> (Rendered, Rendered) {
        let jinja = ChatTemplate::jinja(LLAMA2_CHAT_TEMPLATE).unwrap();
        (
            ChatTemplate::Llama2
                .render(system, user, &tokens())
                .unwrap(),
            jinja
                .render(system, user, &tokens())
                .unwrap_or_else(|e| panic!("{system:?} {user:?}: {e}")),
        )
    }

    #[test]
    fn builtin_llama2_equals_the_jinja_template() {
        for system in [
            Some("You are a helpful, respectful and honest assistant."),
            None,
        ] {
            for user in [
                "hello",
                "  hello \n\t",
                "",
                " \n ",
                "a\u{1c}",
                "<s> [/INST] x",
                "\u{a0}lead and trail\u{3000}",
            ] {
                let (builtin, jinja) = both(system, user);
                assert_eq!(builtin.text, jinja.text, "{system:?} {user:?}");
                // The sentinel cannot find a content the template stripped away entirely.
                if jinja.content.is_some() || !python_strip(user).is_empty() {
                    assert_eq!(builtin.content, jinja.content, "{system:?} {user:?}");
                }
            }
        }
    }

    #[test]
    fn the_content_range_covers_the_stripped_user_message() {
        let rendered = ChatTemplate::Llama2
            .render(Some("sys"), "doc text \n", &tokens())
            .unwrap();
        assert_eq!(
            rendered.text,
            "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\ndoc text [/INST]"
        );
        assert_eq!(&rendered.text[rendered.content.unwrap()], "doc text");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let template = ChatTemplate::jinja("{{ raise_exception('no system role') }}").unwrap();
        let error = template.render(None, "x", &tokens()).unwrap_err();
        assert!(error.to_string().contains("no system role"), "{error}");
    }

    #[test]
    fn tojson_writes_like_python() {
        let template = ChatTemplate::jinja(
            "{{ {'a': [1, 'é<'], 'b': none} | tojson }}|{{ [1, {'k': 2}] | tojson(indent=2) }}",
        )
        .unwrap();
        let text = template.render(None, "x", &tokens()).unwrap().text;
        assert_eq!(
            text,
            "{\"a\": [1, \"é<\"], \"b\": null}|[\n  1,\n  {\n    \"k\": 2\n  }\n]"
        );
    }

    #[test]
    fn a_conversation_renders_every_turn_in_order() {
        let template = JinjaTemplate::new(LLAMA2_CHAT_TEMPLATE).unwrap();
        let text = template
            .render_messages(
                &[
                    ("system", "sys"),
                    ("user", "hi"),
                    ("assistant", "hello"),
                    ("user", "bye"),
                ],
                &tokens(),
                true,
            )
            .unwrap();
        assert_eq!(
            text,
            "<s>[INST] <<SYS>>\nsys\n<</SYS>>\n\nhi [/INST] hello </s><s>[INST] bye [/INST]"
        );
        let chatml = JinjaTemplate::new(
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
        )
        .unwrap();
        let without = chatml
            .render_messages(&[("user", "x")], &tokens(), false)
            .unwrap();
        assert_eq!(without, "<|im_start|>user\nx<|im_end|>\n");
        let with = chatml
            .render_messages(&[("user", "x")], &tokens(), true)
            .unwrap();
        assert_eq!(
            with,
            "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn invalid_templates_are_errors() {
        assert!(ChatTemplate::jinja("{% for %}").is_err());
    }
}
