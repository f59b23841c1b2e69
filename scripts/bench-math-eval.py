"""The baseline of scripts/bench-math-eval.sh, and its token counter.

    python bench-math-eval.py generate --gguf FILE --prompts FILE.jsonl --n 32 \
        --batch-size 16 --max-new-tokens N --threads T --output FILE.jsonl
    python bench-math-eval.py count --gguf FILE GENERATIONS.jsonl...

`generate` is the harness's non-vLLM path: Hugging Face transformers `generate`, greedy, in
batches (left padding), with the harness's stop strings, on the GGUF's weights (dequantized
by transformers' `gguf_file=` loader) and tokenizer; it writes `{"idx", "output"}` rows (the
text cut before the first stop string, as the harness cuts it) and prints the generation
seconds (model loading excluded). `count` prints the tokens of the `output` fields of
generation files, counted with the same tokenizer, so both sides' tokens/s use one measure.
"""

import argparse
import json
import os
import sys
import time

STOP = ["</s>", "\n\nQuestion:", "\n\nProblem:"]


def load_tokenizer(gguf: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        os.path.dirname(gguf), gguf_file=os.path.basename(gguf)
    )


def before_stop(text: str) -> str:
    cut = min((text.find(s) for s in STOP if s in text), default=len(text))
    return text[:cut]


def generate(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.gguf)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(args.gguf),
        gguf_file=os.path.basename(args.gguf),
        torch_dtype=torch.float32,
        # SmolLM2 ties its output head to the embeddings (the GGUF has no output.weight);
        # transformers' GGUF config leaves the head untied, hence random, without this.
        tie_word_embeddings=True,
    ).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    rows = [json.loads(line) for line in open(args.prompts) if line.strip()]
    rows = sorted(rows, key=lambda r: r["idx"])[: args.n]

    seconds = 0.0
    with open(args.output, "w") as out:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start : start + args.batch_size]
            inputs = tokenizer([r["prompt"] for r in batch], return_tensors="pt", padding=True)
            began = time.perf_counter()
            with torch.inference_mode():
                generated = model.generate(
                    **inputs,
                    max_new_tokens=args.max_new_tokens,
                    do_sample=False,
                    stop_strings=STOP,
                    tokenizer=tokenizer,
                    pad_token_id=tokenizer.pad_token_id,
                )
            seconds += time.perf_counter() - began
            new = generated[:, inputs["input_ids"].shape[1] :]
            for row, ids in zip(batch, new):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                out.write(json.dumps({"idx": row["idx"], "output": before_stop(text)}) + "\n")
    print(json.dumps({"seconds": seconds, "samples": len(rows)}))


def count(args) -> None:
    tokenizer = load_tokenizer(args.gguf)
    total = 0
    for path in args.files:
        for line in open(path):
            if line.strip():
                total += len(tokenizer.encode(json.loads(line)["output"], add_special_tokens=False))
    print(total)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("--gguf", required=True)
    gen.add_argument("--prompts", required=True)
    gen.add_argument("--n", type=int, default=32)
    gen.add_argument("--batch-size", type=int, default=16)
    gen.add_argument("--max-new-tokens", type=int, required=True)
    gen.add_argument("--threads", type=int, default=os.cpu_count())
    gen.add_argument("--output", required=True)
    cnt = sub.add_parser("count")
    cnt.add_argument("--gguf", required=True)
    cnt.add_argument("files", nargs="+")
    args = parser.parse_args()
    {"generate": generate, "count": count}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
