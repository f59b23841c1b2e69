"""The baseline of scripts/bench-annotate.sh: the official `openai` Python client sends the
document-stage annotation requests `prox annotate` sends (both rubric templates over every
document, one user message each, the same max_tokens and requests in flight) to the same
server, and reports the wall time, so that the two clients' requests/s compare directly.

    python bench-annotate.py --endpoint URL --model NAME --corpus FILE.jsonl \
        --text-field doc_content --templates DIR --max-tokens N --in-flight N
"""

import argparse
import asyncio
import json
import pathlib
import time

import openai


def render(template: str, document: str) -> str:
    # minijinja, like Jinja2, drops the template's one trailing newline.
    text = template.replace("{{ document }}", document)
    return text[:-1] if text.endswith("\n") else text


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--templates", required=True, help="the folder of the doc templates")
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--in-flight", type=int, required=True)
    args = parser.parse_args()

    templates = [
        path.read_text()
        for path in sorted(pathlib.Path(args.templates).glob("*.jinja"))
    ]
    documents = [
        json.loads(line)[args.text_field]
        for line in open(args.corpus)
        if line.strip()
    ]
    prompts = [render(t, d) for d in documents for t in templates]

    client = openai.AsyncOpenAI(
        base_url=args.endpoint + "/v1", api_key="none", max_retries=5, timeout=600
    )
    limit = asyncio.Semaphore(args.in_flight)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}

    async def one(prompt: str) -> None:
        async with limit:
            answer = await client.chat.completions.create(
                model=args.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=args.max_tokens,
            )
        usage["prompt_tokens"] += answer.usage.prompt_tokens
        usage["completion_tokens"] += answer.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one(p) for p in prompts))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "documents": len(documents),
                "requests": len(prompts),
                "seconds": seconds,
                **usage,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
