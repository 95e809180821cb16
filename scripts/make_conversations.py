"""Make N varied chat conversations (JSONL) from the bundled Python-docs Q&A, for scale tests and benches.

Each conversation has 1-3 user/assistant exchanges drawn from recipes/data/pydoc-qa/train.jsonl, with the
question reworded (one of several openings and closings), the answer given a varying lead-in and closing
sentence, and a numbered detail, so records differ the way a real SFT mix differs: many distinct texts,
some near duplicates (the same exchange with another wording) and a few exact copies (about 1 in 200).
Deterministic for a given seed. Never commit the output: write it under /tmp or another ignored folder.

    .venv/bin/python scripts/make_conversations.py 1000000 /tmp/conversations-1m.jsonl [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "recipes" / "data" / "pydoc-qa" / "train.jsonl"
OPENINGS = ("", "Quick question: ", "Please help. ", "I am new to Python. ", "In Python 3, ", "Hi! ")
CLOSINGS = ("", " Thanks.", " Keep it short.", " An example would help.", " Why does it matter?")
LEADS = ("", "Sure. ", "In short: ", "Here is the gist. ", "Good question. ")
ENDINGS = (
    "",
    " See the standard library documentation for details.",
    " It is part of the standard library, so nothing needs installing.",
    " Try it in the interactive interpreter to see it work.",
)
EXACT_COPY_RATE = 0.005  # share of records that repeat an earlier one verbatim


def _exchanges(path: Path) -> list[tuple[str, str]]:
    """(question, answer) of the first exchange of every bundled record."""
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            messages = json.loads(line)["messages"]
            pairs.append((messages[0]["content"], messages[1]["content"]))
    return pairs


def conversation(rng: random.Random, pairs: list[tuple[str, str]], number: int) -> dict[str, object]:
    """One varied conversation: 1-3 exchanges, reworded, with a numbered detail."""
    messages = []
    for turn in range(rng.choice((1, 1, 1, 2, 3))):
        question, answer = rng.choice(pairs)
        detail = f" (case {number}.{turn})" if rng.random() < 0.5 else f" Ticket {rng.randrange(10**6)}."
        messages.append(
            {"role": "user", "content": f"{rng.choice(OPENINGS)}{question}{rng.choice(CLOSINGS)}{detail}"}
        )
        messages.append({"role": "assistant", "content": f"{rng.choice(LEADS)}{answer}{rng.choice(ENDINGS)}"})
    return {"messages": messages}


def write_conversations(count: int, output: Path, seed: int = 7) -> Path:
    """Write `count` conversations as JSONL to output; returns the path."""
    rng = random.Random(seed)
    pairs = _exchanges(SOURCE)
    recent: list[str] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8") as handle:
        for number in range(count):
            if recent and rng.random() < EXACT_COPY_RATE:
                line = rng.choice(recent)
            else:
                line = json.dumps(conversation(rng, pairs, number), ensure_ascii=False)
                recent = [*recent[-99:], line]
            handle.write(line + "\n")
    return output


def main() -> None:
    """Command line: count, output path, seed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("count", type=int)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(write_conversations(args.count, args.output, args.seed))


if __name__ == "__main__":
    main()
