//! What the ProX refining models see: the chat prompt of the document stage, and the
//! line-numbered chunks and chat prompts of the chunk stage, as text and as token ids.
//!
//! - [`ChatTemplate`]: the reference's Llama-2 format built in, or any Hugging Face Jinja
//!   chat template (rendered with minijinja as transformers renders them).
//! - [`chunk_document`]: numbers the lines `[000]…`, and packs them greedily into chunks of
//!   at most 1500 tokens.
//! - [`Prompter`]: a tokenizer, a template, a [`PromptMode`] and a [`PromptBudget`]
//!   together; gives [`Prompter::doc_prompt`] and [`Prompter::chunk_prompts`].
//!
//! Two modes:
//!
//! - [`PromptMode::Faithful`] reproduces the reference exactly, quirks included: the
//!   document stage encodes with the slow `legacy=false` tokenizer and cuts the ids at 2000,
//!   which can cut off the closing ` [/INST]`; the chunk stage's ids start with two BOS; a
//!   `<s>` inside a web page becomes a BOS token.
//! - [`PromptMode::Robust`], for users who fine-tune their own refiners: document text never
//!   turns into special tokens, and the document stage shortens the document, not the
//!   prompt, so that the prompt always ends with ` [/INST]`. Everything else is as faithful.
//!
//! ```no_run
//! use prox_prompt::{PromptMode, Prompter};
//! use prox_tokenizer::Tokenizer;
//!
//! let tokenizer = Tokenizer::from_path("models/web-chunk-refining-lm".as_ref())?;
//! let prompter = Prompter::new(&tokenizer).with_mode(PromptMode::Faithful);
//! for chunk in prompter.chunk_prompts("First line\nSecond line")? {
//!     assert!(chunk.prompt.starts_with("<s>[INST] <<SYS>>"));
//!     assert_eq!(chunk.ids[..2], [1, 1]);
//! }
//! let doc = prompter.doc_prompt("A whole web page.")?;
//! assert!(doc.ids.len() <= 2000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chunk;
mod template;

use std::fmt;
use std::str::FromStr;

use prox_tokenizer::{EncodeOptions, EncodeStyle, Tokenizer};

/// The two refining stages, each with its own prompt.
pub use prox_program::Stage;

pub use crate::chunk::{chunk_document, number_lines, write_numbered_line, Chunk};
pub use crate::template::{
    is_python_space, python_strip, ChatTemplate, JinjaTemplate, Rendered, TemplateTokens,
    LLAMA2_CHAT_TEMPLATE,
};

/// The system message of both stages.
pub const SYSTEM_PROMPT: &str = "You are a helpful, respectful and honest assistant.";

/// Why a prompt could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A chat template that does not compile or fails to render (`raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Tokenizer(#[from] prox_tokenizer::Error),
    /// Robust mode: the template alone needs more tokens than the budget allows.
    #[error(
        "the prompt without any document text takes {needed} tokens, over the budget of {budget}"
    )]
    BudgetTooSmall { budget: usize, needed: usize },
    /// Robust mode: the chat template does not include the user's content verbatim, so
    /// there is no document text to keep literal or to shorten.
    #[error("robust mode needs a chat template that includes the user message verbatim")]
    ContentNotFound,
}

/// Reproduce the reference exactly, or build well-formed prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PromptMode {
    #[default]
    Faithful,
    Robust,
}

impl fmt::Display for PromptMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Faithful => "faithful",
            Self::Robust => "robust",
        })
    }
}

impl FromStr for PromptMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "faithful" => Ok(Self::Faithful),
            "robust" => Ok(Self::Robust),
            other => Err(format!(
                "unknown prompt mode `{other}` (known: faithful, robust)"
            )),
        }
    }
}

/// Token budgets of the two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptBudget {
    /// Most tokens of numbered lines (each counted with a BOS) in one chunk (reference: 1500).
    pub chunk_tokens: usize,
    /// Most ids of a document-stage prompt (reference: 2000).
    pub doc_tokens: usize,
}

impl Default for PromptBudget {
    fn default() -> Self {
        Self {
            chunk_tokens: 1500,
            doc_tokens: 2000,
        }
    }
}

/// A document-stage prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocPrompt {
    /// The rendered prompt, before any shortening.
    pub prompt: String,
    /// The ids the model sees.
    pub ids: Vec<u32>,
    /// Whether the ids (faithful) or the document (robust) had to be cut to fit the budget.
    pub truncated: bool,
}

/// A chunk-stage prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPrompt {
    pub chunk: Chunk,
    /// The rendered prompt string (user message `[doc]\n{chunk}\n[/doc]`).
    pub prompt: String,
    /// The ids the engine sees: BOS, then the prompt encoded with special tokens (so two
    /// BOS with the Llama-2 template).
    pub ids: Vec<u32>,
}

/// Builds the prompts of both stages for one tokenizer, template, mode and budget.
#[derive(Debug, Clone)]
pub struct Prompter<'t> {
    tokenizer: &'t Tokenizer,
    template: ChatTemplate,
    tokens: TemplateTokens,
    system: Option<String>,
    mode: PromptMode,
    budget: PromptBudget,
}

impl<'t> Prompter<'t> {
    /// The reference's setup: Llama-2 template, [`SYSTEM_PROMPT`], faithful, 1500/2000.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        Self {
            tokenizer,
            template: ChatTemplate::Llama2,
            tokens: TemplateTokens {
                bos_token: tokenizer.bos_token().unwrap_or_default().to_string(),
                eos_token: tokenizer.eos_token().unwrap_or_default().to_string(),
            },
            system: Some(SYSTEM_PROMPT.to_string()),
            mode: PromptMode::Faithful,
            budget: PromptBudget::default(),
        }
    }

    pub fn with_template(mut self, template: ChatTemplate) -> Self {
        self.template = template;
        self
    }

    pub fn with_mode(mut self, mode: PromptMode) -> Self {
        self.mode = mode;
        self
    }

    pub fn with_budget(mut self, budget: PromptBudget) -> Self {
        self.budget = budget;
        self
    }

    pub fn mode(&self) -> PromptMode {
        self.mode
    }

    pub fn budget(&self) -> PromptBudget {
        self.budget
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tokenizer
    }

    /// Renders the chat prompt for one user message.
    pub fn render(&self, user: &str) -> Result<Rendered, Error> {
        self.template
            .render(self.system.as_deref(), user, &self.tokens)
    }

    /// Where special tokens must not be recognised: the user content, in robust mode.
    fn literal(&self, rendered: &Rendered) -> Result<Option<std::ops::Range<usize>>, Error> {
        match self.mode {
            PromptMode::Faithful => Ok(None),
            PromptMode::Robust => rendered
                .content
                .clone()
                .map(Some)
                .ok_or(Error::ContentNotFound),
        }
    }

    /// The document-stage prompt: the rendered prompt encoded like the slow `legacy=false`
    /// tokenizer, without another BOS, within `doc_tokens` ids.
    pub fn doc_prompt(&self, text: &str) -> Result<DocPrompt, Error> {
        let budget = self.budget.doc_tokens;
        let rendered = self.render(text)?;
        let mut options = EncodeOptions {
            style: EncodeStyle::SlowLegacyFalse,
            literal: self.literal(&rendered)?,
            limit: Some(budget.saturating_add(1)),
            ..EncodeOptions::default()
        };
        let mut ids = self.tokenizer.encode_with(&rendered.text, &options)?;
        let over = ids.len() > budget;
        if !over {
            return Ok(DocPrompt {
                prompt: rendered.text,
                ids,
                truncated: false,
            });
        }
        match self.mode {
            PromptMode::Faithful => ids.truncate(budget),
            PromptMode::Robust => {
                options.limit = Some(budget.saturating_add(1));
                ids = self.shortened_doc_ids(text, &options)?;
            }
        }
        Ok(DocPrompt {
            prompt: rendered.text,
            ids,
            truncated: true,
        })
    }

    /// The document-stage ids only.
    pub fn doc_prompt_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.doc_prompt(text).map(|p| p.ids)
    }

    /// Robust mode: the ids of the prompt of the longest prefix of the document (found by
    /// bisection on bytes) whose whole prompt fits the budget.
    fn shortened_doc_ids(&self, text: &str, options: &EncodeOptions) -> Result<Vec<u32>, Error> {
        let budget = self.budget.doc_tokens;
        // Encodes the prompt of the first `cut` bytes; `None` if it is over budget.
        let fits = |cut: usize| -> Result<Option<Vec<u32>>, Error> {
            let rendered = self.render(&text[..cut])?;
            let options = EncodeOptions {
                literal: self.literal(&rendered)?,
                ..options.clone()
            };
            let ids = self.tokenizer.encode_with(&rendered.text, &options)?;
            Ok((ids.len() <= budget).then_some(ids))
        };
        let Some(mut best) = fits(0)? else {
            let rendered = self.render("")?;
            let needed = self.tokenizer.encode_with(
                &rendered.text,
                &EncodeOptions {
                    limit: None,
                    literal: self.literal(&rendered)?,
                    ..options.clone()
                },
            )?;
            return Err(Error::BudgetTooSmall {
                budget,
                needed: needed.len(),
            });
        };
        // Find a prefix that is over budget by doubling, then bisect between.
        let (mut low, mut high) = (0, text.len());
        let mut probe = budget.saturating_mul(4).max(64);
        while probe < high {
            let cut = floor_char_boundary(text, probe);
            match fits(cut)? {
                Some(ids) => {
                    low = cut;
                    best = ids;
                    probe = probe.saturating_mul(2);
                }
                None => high = cut,
            }
        }
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let mut cut = floor_char_boundary(text, middle);
            if cut <= low {
                cut = ceil_char_boundary(text, middle);
            }
            if cut <= low || cut >= high {
                // No character boundary strictly between the two.
                break;
            }
            match fits(cut)? {
                Some(ids) => {
                    low = cut;
                    best = ids;
                }
                None => high = cut,
            }
        }
        Ok(best)
    }

    /// The document's chunks, packed within `chunk_tokens`.
    pub fn chunks(&self, text: &str) -> Result<Vec<Chunk>, Error> {
        chunk_document(text, self.tokenizer, self.budget.chunk_tokens, self.mode)
    }

    /// The chunk-stage prompt of one chunk's text.
    pub fn chunk_prompt(&self, chunk_text: &str) -> Result<(String, Vec<u32>), Error> {
        let user = format!("[doc]\n{chunk_text}\n[/doc]");
        let rendered = self.render(&user)?;
        let options = EncodeOptions {
            add_special_tokens: true,
            literal: self.literal(&rendered)?,
            ..EncodeOptions::default()
        };
        let ids = self.tokenizer.encode_with(&rendered.text, &options)?;
        Ok((rendered.text, ids))
    }

    /// Every chunk of the document with its prompt and ids.
    pub fn chunk_prompts(&self, text: &str) -> Result<Vec<ChunkPrompt>, Error> {
        self.chunks(text)?
            .into_iter()
            .map(|chunk| {
                let (prompt, ids) = self.chunk_prompt(&chunk.text)?;
                Ok(ChunkPrompt { chunk, prompt, ids })
            })
            .collect()
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_char_boundary(text: &str, mut index: usize) -> usize {
    while index < text.len() && !text.is_char_boundary(index) {
        index += 1;
    }
    index.min(text.len())
}
