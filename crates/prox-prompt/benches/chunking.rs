//! Chunk-stage prompt construction on the 60 golden documents (0.88 MB): line numbering,
//! per-line token counts, packing, prompt rendering and prompt ids; and the document stage.
//! Throughput is printed as bytes/s and documents/s (divan's `bytes` and `items` counters).
//!
//! `cargo bench -p prox-prompt --bench chunking` (one thread, `DIVAN_THREADS` unset). The
//! reference does about 1 MB/s (65 documents/s) on one core.

use divan::counter::{BytesCount, ItemsCount};
use divan::Bencher;
use prox_prompt::{PromptMode, Prompter};
use prox_tokenizer::Tokenizer;
use std::sync::OnceLock;

fn main() {
    divan::main();
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(&prox_test::fixture("llama2-tokenizer/tokenizer.json"))
            .expect("the fixture tokenizer loads")
    })
}

fn documents() -> &'static [String] {
    static DOCS: OnceLock<Vec<String>> = OnceLock::new();
    DOCS.get_or_init(|| {
        prox_test::read_jsonl(prox_test::fixture("prompts/vectors.jsonl"))
            .into_iter()
            .map(|(_, doc)| doc["text"].as_str().expect("text").to_string())
            .collect()
    })
}

fn counters<'a, 'b>(bencher: Bencher<'a, 'b>) -> Bencher<'a, 'b> {
    let docs = documents();
    let bytes: usize = docs.iter().map(String::len).sum();
    bencher
        .counter(BytesCount::new(bytes))
        .counter(ItemsCount::new(docs.len()))
}

/// The whole chunk stage: chunks, prompt strings and prompt ids, word cache warm.
#[divan::bench(args = [PromptMode::Faithful, PromptMode::Robust])]
fn chunk_prompts(bencher: Bencher, mode: PromptMode) {
    let prompter = Prompter::new(tokenizer()).with_mode(mode);
    counters(bencher).bench_local(|| {
        for doc in documents() {
            divan::black_box(prompter.chunk_prompts(doc).expect("prompts"));
        }
    });
}

/// The same with the word cache emptied before every pass over the 60 documents.
#[divan::bench]
fn chunk_prompts_cold_cache(bencher: Bencher) {
    let prompter = Prompter::new(tokenizer());
    counters(bencher)
        .with_inputs(prox_tokenizer::clear_word_cache)
        .bench_local_values(|()| {
            for doc in documents() {
                divan::black_box(prompter.chunk_prompts(doc).expect("prompts"));
            }
        });
}

/// The whole chunk stage across documents on all cores (rayon), word caches warm.
#[divan::bench]
fn chunk_prompts_all_cores(bencher: Bencher) {
    use rayon::prelude::*;
    let prompter = Prompter::new(tokenizer());
    counters(bencher).bench_local(|| {
        documents().par_iter().for_each(|doc| {
            divan::black_box(prompter.chunk_prompts(doc).expect("prompts"));
        });
    });
}

/// Numbering, per-line counts and packing only.
#[divan::bench]
fn chunks_only(bencher: Bencher) {
    let prompter = Prompter::new(tokenizer());
    counters(bencher).bench_local(|| {
        for doc in documents() {
            divan::black_box(prompter.chunks(doc).expect("chunks"));
        }
    });
}

/// The document stage: render, encode like the slow tokenizer, cut at 2000 ids.
#[divan::bench(args = [PromptMode::Faithful, PromptMode::Robust])]
fn doc_prompts(bencher: Bencher, mode: PromptMode) {
    let prompter = Prompter::new(tokenizer()).with_mode(mode);
    counters(bencher).bench_local(|| {
        for doc in documents() {
            divan::black_box(prompter.doc_prompt_ids(doc).expect("ids"));
        }
    });
}

/// Baseline: the per-line counts of the chunk stage with the `tokenizers` crate itself.
#[divan::bench]
fn line_counts_with_the_tokenizers_crate(bencher: Bencher) {
    let inner = tokenizer().inner();
    counters(bencher).bench_local(|| {
        for doc in documents() {
            for (i, line) in doc.split('\n').enumerate() {
                let numbered = format!("[{i:03}]{line}");
                divan::black_box(
                    inner
                        .encode_fast(numbered.as_str(), true)
                        .expect("ids")
                        .len(),
                );
            }
        }
    });
}

/// The tokenizer alone: whole documents, fast-tokenizer ids (word cache warm).
#[divan::bench]
fn encode_whole_documents(bencher: Bencher) {
    let tokenizer = tokenizer();
    counters(bencher).bench_local(|| {
        for doc in documents() {
            divan::black_box(tokenizer.encode(doc, true).expect("ids"));
        }
    });
}

/// Baseline: the same with the `tokenizers` crate.
#[divan::bench]
fn encode_whole_documents_with_the_tokenizers_crate(bencher: Bencher) {
    let inner = tokenizer().inner();
    counters(bencher).bench_local(|| {
        for doc in documents() {
            divan::black_box(inner.encode_fast(doc.as_str(), true).expect("ids"));
        }
    });
}
