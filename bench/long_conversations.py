"""Long training conversations from real text: consecutive pydoc-qa question/answer pairs chained into one
multi-turn chat until it reaches a token length, for benchmarks at max_length 1k-4k.

Each conversation starts at another record (a different mix of turns per example) and stops adding turns
before it would pass the target, so lengths spread over roughly the last turn's size below it.

    .venv/bin/python bench/long_conversations.py --tokens 2048 --count 64 --output /tmp/long-2048.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "recipes" / "data" / "pydoc-qa" / "train.jsonl"


def conversations(tokens: int, count: int, tokenizer: Any) -> list[dict[str, Any]]:
    """`count` chats of up to `tokens` tokens (as the tokenizer's chat template renders them)."""
    records = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").splitlines()]

    def rendered(messages: list[dict[str, str]]) -> int:
        return len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])

    pairs = [r["messages"] for r in records]
    sizes = [rendered(pair) for pair in pairs]
    # What rendering each pair alone repeats (the default system prompt) and a chat of them holds once.
    shared = sizes[0] + sizes[1] - rendered(pairs[0] + pairs[1])
    step = max(1, len(records) // max(count, 1))
    chats = []
    for index in range(count):
        cursor = (index * step) % len(records)
        chosen, length = [cursor], sizes[cursor]
        while len(chosen) < len(pairs) and length + sizes[(chosen[-1] + 1) % len(pairs)] - shared <= tokens:
            chosen.append((chosen[-1] + 1) % len(pairs))
            length += sizes[chosen[-1]] - shared
        messages = [m for i in chosen for m in pairs[i]]
        while len(chosen) > 1 and rendered(messages) > tokens:  # the estimate is exact for this template
            chosen.pop()
            messages = [m for i in chosen for m in pairs[i]]
        chats.append({"messages": messages})
    return chats


def main() -> None:
    """Write the conversations as JSONL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, required=True, help="target length of each conversation")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    from pipeline.config.loader import load_recipe
    from pipeline.models.loading import load_tokenizer

    tokenizer = load_tokenizer(load_recipe("lora-small").model)
    chats = conversations(args.tokens, args.count, tokenizer)
    args.output.write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
    print(f"{len(chats)} conversations of up to {args.tokens} tokens -> {args.output}")


if __name__ == "__main__":
    main()
