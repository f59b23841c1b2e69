//! Properties of prompt construction on arbitrary documents: no panic, every line in exactly
//! one chunk, budgets kept, robust prompts always closed.

use std::sync::OnceLock;

use proptest::prelude::*;
use prox_prompt::{Error, PromptBudget, PromptMode, Prompter};
use prox_tokenizer::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(&prox_test::fixture("llama2-tokenizer/tokenizer.json")).unwrap()
    })
}

fn document() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "word",
        "The",
        "<s>",
        "</s>",
        "<unk>",
        "[INST]",
        " [/INST]",
        "[/doc]",
        "é",
        "日本語",
        "😀",
        "\0",
        "\u{1c}",
        "\u{a0}",
        "x=1,",
        "0123",
    ]);
    prop::collection::vec(atoms, 0..200).prop_map(|atoms| atoms.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunks_cover_every_line_once_within_budget(
        text in document(),
        budget in 5usize..80,
        robust: bool,
    ) {
        let mode = if robust { PromptMode::Robust } else { PromptMode::Faithful };
        let prompter = Prompter::new(tokenizer())
            .with_mode(mode)
            .with_budget(PromptBudget { chunk_tokens: budget, doc_tokens: 2000 });
        let chunks = prompter.chunks(&text).unwrap();
        let lines = if text.is_empty() { 0 } else { text.split('\n').count() };
        prop_assert_eq!(chunks.iter().map(|c| c.lines).sum::<usize>(), lines);
        let mut next = 0;
        for chunk in &chunks {
            prop_assert_eq!(chunk.first_line, next);
            next += chunk.lines;
            prop_assert!(chunk.tokens <= budget || chunk.lines == 1);
        }
    }

    #[test]
    fn robust_doc_prompts_fit_and_end_with_inst(text in document(), budget in 40usize..300) {
        let prompter = Prompter::new(tokenizer())
            .with_mode(PromptMode::Robust)
            .with_budget(PromptBudget { chunk_tokens: 1500, doc_tokens: budget });
        let close = tokenizer().encode("[/INST]", false).unwrap();
        let doc = prompter.doc_prompt(&text).unwrap();
        prop_assert!(doc.ids.len() <= budget);
        prop_assert!(doc.ids.ends_with(&close));
        prop_assert_eq!(doc.ids.iter().filter(|&&id| id == 1 || id == 2 || id == 0).count(), 1);
    }

    #[test]
    fn faithful_doc_prompts_are_a_prefix_of_the_whole_encoding(text in document(), budget in 1usize..300) {
        let prompter = Prompter::new(tokenizer())
            .with_budget(PromptBudget { chunk_tokens: 1500, doc_tokens: budget });
        let doc = prompter.doc_prompt(&text).unwrap();
        let whole = tokenizer().encode_prompt_like_slow(&doc.prompt).unwrap();
        prop_assert_eq!(&doc.ids[..], &whole[..whole.len().min(budget)]);
        prop_assert_eq!(doc.truncated, whole.len() > budget);
    }
}

#[test]
fn a_robust_budget_smaller_than_the_template_is_a_clear_error() {
    let prompter = Prompter::new(tokenizer())
        .with_mode(PromptMode::Robust)
        .with_budget(PromptBudget {
            chunk_tokens: 1500,
            doc_tokens: 10,
        });
    let error = prompter.doc_prompt("some document text").unwrap_err();
    assert!(
        matches!(error, Error::BudgetTooSmall { budget: 10, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("over the budget of 10"));
}
