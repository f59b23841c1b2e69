#!/usr/bin/env python3
"""The reference packing recipe, for benchmarks and cross-checks of `prox tokenize`.

A reimplementation of what ProX's `train/data_tokenize/prepare_web.py` does in one process with
litgpt's `PackedDatasetBuilder`: encode each non-empty text with the transformers fast
tokenizer, append EOS, drop a leading BOS, and fill chunks of `--chunk-size` tokens across
documents; a chunk is written when a token arrives that does not fit it, and the final partial
chunk is dropped. Unused slots would hold the separator (BOS). Tokens are uint16 when the
vocabulary has fewer than 65500 entries, else int32.

It reads plain JSON lines (the reference reads .jsonl.gz and Parquet; decompression is not what
is measured). It prints one JSON line with the counts and the time taken.

    python3 scripts/reference_prepare.py --tokenizer DIR --input a.jsonl --output out/ \
        [--chunk-size N] [--prefix train_web_0] [--text-field text]
"""

import argparse
import json
import os
import struct
import sys
import time

import numpy as np
from transformers import AutoTokenizer

MAGIC = b"LITPKDS"
DTYPE_CODES = {np.dtype(np.uint16): 8, np.dtype(np.int32): 4}


class ChunkWriter:
    """Fills fixed-size chunks and writes each as `{prefix}_{counter:010d}.bin`."""

    def __init__(self, outdir, prefix, chunk_size, separator, vocab_size):
        self.outdir = outdir
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.separator = separator
        self.dtype = np.dtype(np.uint16 if vocab_size < 65500 else np.int32)
        self.chunk = np.full(chunk_size, separator, dtype=self.dtype)
        self.filled = 0
        self.files = 0
        self.tokens_in = 0

    def add(self, tokens):
        self.tokens_in += len(tokens)
        # A full chunk waits until a token arrives that does not fit it.
        while self.filled + len(tokens) > self.chunk_size:
            room = self.chunk_size - self.filled
            self.chunk[self.filled :] = tokens[:room]
            self.flush()
            tokens = tokens[room:]
        self.chunk[self.filled : self.filled + len(tokens)] = tokens
        self.filled += len(tokens)

    def flush(self):
        name = os.path.join(self.outdir, f"{self.prefix}_{self.files:010d}.bin")
        with open(name, "wb") as out:
            out.write(MAGIC)
            out.write(struct.pack("<Q", 1))
            out.write(struct.pack("<B", DTYPE_CODES[self.dtype]))
            out.write(struct.pack("<Q", self.chunk_size))
            out.write(self.chunk.tobytes(order="C"))
        self.files += 1
        self.chunk.fill(self.separator)
        self.filled = 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--input", required=True, nargs="+")
    parser.add_argument("--output", required=True)
    parser.add_argument("--chunk-size", type=int, default=2049 * 1024)
    parser.add_argument("--prefix", default="train_web_0")
    parser.add_argument("--text-field", default="text")
    args = parser.parse_args()

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer, use_fast=True)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    os.makedirs(args.output, exist_ok=True)
    writer = ChunkWriter(args.output, args.prefix, args.chunk_size, bos, tokenizer.vocab_size)

    documents = empty = 0
    for path in args.input:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                documents += 1
                text = json.loads(line)[args.text_field]
                if text == "":
                    empty += 1
                    continue
                ids = tokenizer.encode(text=text) + [eos]
                if ids[0] == bos:
                    ids = ids[1:]
                writer.add(np.array(ids, dtype=writer.dtype))

    seconds = time.perf_counter() - started
    json.dump(
        {
            "documents": documents,
            "documents_empty": empty,
            "tokens": writer.tokens_in,
            "files_written": writer.files,
            "tokens_discarded": writer.filled,
            "seconds": seconds,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
