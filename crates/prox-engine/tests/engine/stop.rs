//! Stop strings in batched greedy decoding ([`generate_text`]) on the tiny fixture model
//! with its real Llama tokenizer: the generation ends at the token that completes the first
//! stop string, the text is what comes before it, and batch companions change nothing.

use std::sync::OnceLock;

use prox_engine::{
    generate_text, FinishReason, GenerateOptions, Generation, Model, Request, RequestError,
    TextGeneration, TextRequest,
};

use crate::common::{generate_ok, tiny_llama};

const NEW_TOKENS: usize = 48;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(tiny_llama)
}

fn tokenizer() -> &'static prox_tokenizer::Tokenizer {
    model()
        .tokenizer
        .as_ref()
        .expect("the fixture has a tokenizer")
}

const PROMPTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: what is two plus two?\nAnswer:",
    "def main():\n    print(",
];

fn request(prompt: &str, stop: &[&str]) -> TextRequest {
    TextRequest {
        request: Request {
            prompt_ids: tokenizer().encode(prompt, true).unwrap(),
            max_new_tokens: NEW_TOKENS,
        },
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn free(prompt: &str) -> Generation {
    let requests = [request(prompt, &[]).request];
    generate_ok(&model().llama, &requests, &GenerateOptions::default()).remove(0)
}

fn text_of(requests: &[TextRequest]) -> Vec<TextGeneration> {
    generate_text(
        &model().llama,
        tokenizer(),
        requests,
        &GenerateOptions::default(),
    )
    .unwrap()
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

/// A stop string taken from the free generation's text across the boundary between its
/// `token`-th and next token, and where the generation must then end.
fn spanning_stop(free: &Generation, token: usize) -> (String, String, usize) {
    let full = tokenizer().decode(&free.ids, true).unwrap();
    let head = tokenizer().decode(&free.ids[..token], true).unwrap();
    assert!(
        full.starts_with(&head),
        "{head:?} is not a prefix of {full:?}"
    );
    let chars_before: Vec<char> = head.chars().rev().take(2).collect();
    let chars_after: Vec<char> = full[head.len()..].chars().take(2).collect();
    assert!(!chars_before.is_empty() && !chars_after.is_empty());
    let stop: String = chars_before
        .iter()
        .rev()
        .chain(chars_after.iter())
        .collect();
    let expected_text = full[..full.find(&stop).unwrap()].to_owned();
    // The first prefix of the ids whose text holds the stop string ends the generation.
    let ends_at = (1..=free.ids.len())
        .find(|&n| {
            tokenizer()
                .decode(&free.ids[..n], true)
                .unwrap()
                .contains(&stop)
        })
        .unwrap();
    (stop, expected_text, ends_at)
}

#[test]
fn without_stop_strings_ids_and_text_are_those_of_generate() {
    let requests: Vec<TextRequest> = PROMPTS.iter().map(|p| request(p, &[])).collect();
    for (prompt, got) in PROMPTS.iter().zip(text_of(&requests)) {
        let expected = free(prompt);
        assert_eq!(got.generation.ids, expected.ids, "{prompt:?}");
        assert_eq!(got.generation.finish_reason, expected.finish_reason);
        assert_eq!(
            got.text,
            tokenizer().decode(&expected.ids, true).unwrap(),
            "{prompt:?}"
        );
        assert_eq!(got.stop, None);
    }
}

#[test]
fn a_stop_string_that_never_appears_changes_nothing() {
    for prompt in PROMPTS {
        let expected = free(prompt);
        let got = text_of(&[request(prompt, &["\u{1}never\u{2}"])]).remove(0);
        assert_eq!(got.generation.ids, expected.ids, "{prompt:?}");
        assert_eq!(got.generation.finish_reason, FinishReason::Length);
        assert_eq!(got.text, tokenizer().decode(&expected.ids, true).unwrap());
        assert_eq!(got.stop, None);
    }
}

#[test]
fn a_stop_string_spanning_two_tokens_ends_the_generation_before_it() {
    let mut mismatches = Vec::new();
    for prompt in PROMPTS {
        let free = free(prompt);
        for token in [3, 10, 20] {
            let (stop, expected_text, ends_at) = spanning_stop(&free, token);
            let got = text_of(&[request(prompt, &[&stop])]).remove(0);
            let expected = (
                expected_text.as_str(),
                &free.ids[..ends_at],
                FinishReason::Stop,
                Some(stop.as_str()),
            );
            let actual = (
                got.text.as_str(),
                got.generation.ids.as_slice(),
                got.generation.finish_reason,
                got.stop.as_deref(),
            );
            if actual != expected {
                mismatches.push(format!(
                    "{prompt:?} stop {stop:?}: got {actual:?}, expected {expected:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn batch_companions_do_not_change_a_stopped_generation() {
    let free0 = free(PROMPTS[0]);
    let (stop, _, _) = spanning_stop(&free0, 10);
    let free1 = free(PROMPTS[1]);
    let (other_stop, _, _) = spanning_stop(&free1, 5);
    let alone = text_of(&[request(PROMPTS[0], &[&stop])]).remove(0);
    let batch = text_of(&[
        request(PROMPTS[1], &[&other_stop]),
        request(PROMPTS[2], &[]),
        request(PROMPTS[0], &[&stop]),
        request(PROMPTS[1], &["\u{1}never"]),
    ]);
    assert_eq!(batch[2].text, alone.text);
    assert_eq!(batch[2].generation.ids, alone.generation.ids);
    assert_eq!(batch[2].stop, alone.stop);
    assert_eq!(batch[0].stop.as_deref(), Some(other_stop.as_str()));
    assert_eq!(batch[1].generation.ids, free(PROMPTS[2]).ids);
    assert_eq!(batch[3].generation.ids, free1.ids);
}

#[test]
fn the_earliest_of_several_stop_strings_wins() {
    let free = free(PROMPTS[0]);
    let (early, early_text, _) = spanning_stop(&free, 5);
    let (late, _, _) = spanning_stop(&free, 25);
    let got = text_of(&[request(PROMPTS[0], &[&late, &early])]).remove(0);
    assert_eq!(got.text, early_text);
    assert_eq!(got.stop.as_deref(), Some(early.as_str()));
}

#[test]
fn the_end_of_sequence_token_still_ends_a_generation_with_stop_strings() {
    let free = free(PROMPTS[0]);
    let options = GenerateOptions {
        eos_token_ids: Some(vec![free.ids[6]]),
        ..GenerateOptions::default()
    };
    let got = generate_text(
        &model().llama,
        tokenizer(),
        &[request(PROMPTS[0], &["\u{1}never"])],
        &options,
    )
    .unwrap()
    .remove(0)
    .unwrap();
    let ends = free.ids.iter().position(|&id| id == free.ids[6]).unwrap() + 1;
    assert_eq!(got.generation.ids, free.ids[..ends]);
    assert_eq!(got.generation.finish_reason, FinishReason::Stop);
    assert_eq!(got.stop, None);
}

#[test]
fn an_empty_stop_string_is_refused_for_its_request_only() {
    let results = generate_text(
        &model().llama,
        tokenizer(),
        &[request(PROMPTS[0], &["x", ""]), request(PROMPTS[1], &[])],
        &GenerateOptions::default(),
    )
    .unwrap();
    assert_eq!(
        results[0].as_ref().unwrap_err(),
        &RequestError::EmptyStopString { index: 1 }
    );
    assert_eq!(
        results[1].as_ref().unwrap().generation.ids,
        free(PROMPTS[1]).ids
    );
}

#[test]
fn no_room_to_generate_gives_an_empty_text() {
    let mut zero = request(PROMPTS[0], &["a"]);
    zero.request.max_new_tokens = 0;
    let got = text_of(&[zero]).remove(0);
    assert_eq!(
        (got.text.as_str(), got.generation.finish_reason, got.stop),
        ("", FinishReason::Length, None)
    );
}
