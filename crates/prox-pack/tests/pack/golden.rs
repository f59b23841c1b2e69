//! The reference's packed output for `fixtures/packed/input.jsonl`, reproduced byte for byte.

use std::path::Path;

use prox_pack::{Dtype, Header, PackSummary, PackedWriter, Recipe, Remainder};
use prox_tokenizer::Tokenizer;

fn expected() -> serde_json::Value {
    prox_test::json::read(prox_test::fixture("packed/expected.json"))
}

fn pack(out: &Path, encode: impl Fn(&str) -> Vec<u32>) -> PackSummary {
    let expected = expected();
    let recipe = Recipe {
        bos: expected["sep_token"].as_u64().unwrap() as u32,
        eos: expected["eos_token"].as_u64().unwrap() as u32,
    };
    let header = Header {
        dtype: Dtype::for_vocab_size(32000),
        chunk_size: 4096,
    };
    let mut writer = PackedWriter::new(out, "train_web_0", header, recipe.bos).unwrap();
    for (_, row) in prox_test::read_jsonl(prox_test::fixture("packed/input.jsonl")) {
        let text = row["text"].as_str().unwrap();
        if !Recipe::skips(text) {
            writer.push(&recipe.document_tokens(encode(text))).unwrap();
        }
    }
    writer.finish(Remainder::Drop).unwrap()
}

fn assert_matches_the_reference(out: &Path, summary: &PackSummary) {
    let fixtures = prox_test::fixture("packed");
    let names_in = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".bin"))
            .collect();
        names.sort();
        names
    };
    let expected_names = names_in(&fixtures);
    assert_eq!(expected_names.len(), 14);
    assert_eq!(
        names_in(out),
        expected_names,
        "the files written differ from the reference's"
    );
    assert_eq!(
        std::fs::read_dir(out).unwrap().count(),
        expected_names.len()
    );

    let mismatches: Vec<String> = expected_names
        .iter()
        .filter(|name| {
            std::fs::read(out.join(name)).unwrap() != std::fs::read(fixtures.join(name)).unwrap()
        })
        .map(|name| format!("{name}: bytes differ"))
        .collect();
    prox_test::mismatch::assert_none(&mismatches, expected_names.len(), "packed files");

    let expected = expected();
    assert_eq!(
        summary.files.len() as u64,
        expected["files_written"].as_u64().unwrap()
    );
    assert_eq!(
        summary.tokens_in,
        expected["total_tokens_added"].as_u64().unwrap()
    );
    assert_eq!(
        summary.tokens_discarded,
        expected["tokens_discarded_in_final_partial_chunk"]
            .as_u64()
            .unwrap()
    );
    assert_eq!(
        u64::from(Dtype::U16.code()),
        expected["dtype_code"].as_u64().unwrap()
    );
}

#[test]
fn packing_the_fixture_reproduces_the_reference_files_byte_for_byte() {
    let tokenizer = Tokenizer::from_path(&prox_test::fixture("llama2-tokenizer")).unwrap();
    assert_eq!(tokenizer.inner().get_vocab_size(false), 32000);
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_id(), Some(2));
    let out = tempfile::tempdir().unwrap();
    let summary = pack(out.path(), |text| tokenizer.encode(text, true).unwrap());
    assert_matches_the_reference(out.path(), &summary);
}

#[test]
fn the_tokenizers_library_packs_the_same_files() {
    let tokenizer = Tokenizer::from_path(&prox_test::fixture("llama2-tokenizer")).unwrap();
    let library = tokenizer.inner();
    let out = tempfile::tempdir().unwrap();
    let summary = pack(out.path(), |text| {
        library.encode(text, true).unwrap().get_ids().to_vec()
    });
    assert_matches_the_reference(out.path(), &summary);
}
