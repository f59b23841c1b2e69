#!/usr/bin/env python3
"""Writes a synthetic ProX-style corpus as JSON lines on standard output, for benchmarks.

Each row has `id`, `doc_content` (a web-like document of numbered-looking lines), `url` and
`metadata.chunk_program` (a chunk program as the refiner writes them: remove_lines and
normalize calls, sometimes untouch_doc). Deterministic for a given --seed.
"""
import argparse
import json
import random
import sys

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her all she there would their we him been has when who "
    "will more no if out so said what up its about into than them can only other new some "
    "could time these two may then do first any my now such like our over man me even most "
    "made after also did many before must through back years where much your way well down "
    "home privacy cookie subscribe newsletter copyright reserved click share login"
).split()


def document(rng):
    lines = []
    for _ in range(rng.randint(3, 60)):
        n = rng.randint(0, 30)
        lines.append(" ".join(rng.choice(WORDS) for _ in range(n)))
    return "\n".join(lines)


def program(rng, lines):
    calls = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.random()
        if kind < 0.6:
            start = rng.randint(0, max(0, lines - 1))
            calls.append(f"remove_lines(start={start}, end={min(lines - 1, start + rng.randint(0, 3))})")
        elif kind < 0.9:
            source = rng.choice(WORDS)
            calls.append(f'normalize(source_str="{source}", target_str="{rng.choice(WORDS)}")')
        else:
            calls.append("untouch_doc()")
    return "\n".join(calls) or "untouch_doc()"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    target = int(args.mb * 1_000_000)
    written = 0
    out = sys.stdout
    i = 0
    while written < target:
        text = document(rng)
        row = {
            "id": f"doc-{i}",
            "doc_content": text,
            "url": f"https://example.org/{i}",
            "metadata": {"chunk_program": program(rng, text.count("\n") + 1)},
        }
        line = json.dumps(row) + "\n"
        out.write(line)
        written += len(line)
        i += 1


if __name__ == "__main__":
    main()
