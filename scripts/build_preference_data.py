"""Build the bundled preference pairs (pydoc-pairs) from the bundled Python-docs Q&A (pydoc-qa).

Each pair asks the first question of a pydoc-qa record. `chosen` is its answer; `rejected` is a plausible
wrong one: the same signature with the description of a similarly named object (the closest name in the
same module, else anywhere), e.g. `json.dumps(obj, ...)` described as json.loads is described. So a model
that prefers chosen must know which name does what, not just how an answer looks. Train pairs come from
pydoc-qa's train split, eval pairs from its eval split (no object name is in both).
It also writes KTO's unpaired form of the same data (pydoc-feedback): each question once, with either its
right answer (label true) or the wrong one (label false), half each (seeded).
And GRPO's prompts with a short answer that can be checked (pydoc-kinds): "Is `X` a function, a class or a
method?" with the kind pydoc-qa's follow-up turn states.
Deterministic: ``python scripts/build_preference_data.py`` rewrites recipes/data/pydoc-pairs/, pydoc-feedback/
and pydoc-kinds/.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "recipes" / "data" / "pydoc-qa"
OUT_DIR = ROOT / "recipes" / "data" / "pydoc-pairs"
FEEDBACK_DIR = ROOT / "recipes" / "data" / "pydoc-feedback"
KINDS_DIR = ROOT / "recipes" / "data" / "pydoc-kinds"
KIND_QUESTION = "Is it a function, a class or a method?"
KIND_ANSWER = re.compile(r"is an? (function|class|method)\b")
SEED, MAX_TRAIN, MAX_EVAL = 1234, 1500, 120


def read_entries(path: Path) -> list[dict[str, str]]:
    """(name, question, signature, description) of each record whose answer reads '`signature`: text'."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        question, answer = record["messages"][0]["content"], record["messages"][1]["content"]
        head, sep, description = answer.partition("`: ")
        if not sep or not head.startswith("`") or len(description.split()) < 3:
            continue
        entries.append(
            {
                "name": record["source"],
                "question": question,
                "signature": head[1:],
                "description": description,
            }
        )
    return entries


def _module(name: str) -> str:
    return name.rpartition(".")[0]


def wrong_description(entry: dict[str, str], pool: list[dict[str, str]]) -> str | None:
    """The description of the most similarly named other object (same module first) that says otherwise."""
    own = entry["description"].strip().casefold()
    last = entry["name"].rpartition(".")[2]
    candidates = [
        e for e in pool if e["name"] != entry["name"] and e["description"].strip().casefold() != own
    ]
    same_module = [e for e in candidates if _module(e["name"]) == _module(entry["name"])]
    for group in (same_module, candidates):
        if group:
            best = max(
                group,
                key=lambda e: (
                    difflib.SequenceMatcher(None, last, e["name"].rpartition(".")[2]).ratio(),
                    e["name"],
                ),
            )
            return best["description"]
    return None


def build_pairs(
    entries: list[dict[str, str]], pool: list[dict[str, str]], limit: int
) -> list[dict[str, str]]:
    """Up to `limit` pairs (seeded sample), in name order."""
    pairs = []
    for entry in entries:
        wrong = wrong_description(entry, pool)
        if wrong is None:
            continue
        pairs.append(
            {
                "prompt": entry["question"],
                "chosen": f"`{entry['signature']}`: {entry['description']}",
                "rejected": f"`{entry['signature']}`: {wrong}",
                "source": entry["name"],
            }
        )
    if len(pairs) > limit:
        pairs = sorted(random.Random(SEED).sample(pairs, limit), key=lambda p: p["source"])
    return pairs


README = """# pydoc-pairs: preference pairs from the Python-docs Q&A

Bundled DPO data (`recipes/dpo-small.yaml`), made by `python scripts/build_preference_data.py` from
`recipes/data/pydoc-qa` (Python Software Foundation License: the text is CPython's docstrings).

- **Records:** {train} train (`train.jsonl`), {eval} eval (`eval.jsonl`); split as pydoc-qa is, by object
  name, so no name is in both files.
- **Format:** `{{"prompt": question, "chosen": answer, "rejected": answer, "source": "json.dumps"}}`.
- **chosen** is the object's own answer from pydoc-qa; **rejected** keeps the same signature but gives the
  description of the most similarly named other object (same module first): plausible, and wrong. Preferring
  chosen takes knowing what each name does.
"""


FEEDBACK_README = """# pydoc-feedback: labelled answers from the Python-docs Q&A

Bundled KTO data (`recipes/kto-small.yaml`), made by `python scripts/build_preference_data.py` from the pairs
of `recipes/data/pydoc-pairs` (Python Software Foundation License: the text is CPython's docstrings).

- **Records:** {train} train (`train.jsonl`), {eval} eval (`eval.jsonl`); {good} of the train records are
  labelled true.
- **Format:** `{{"prompt": question, "completion": answer, "label": true|false, "source": "json.dumps"}}`.
- Each question appears once: with its right answer (`label: true`) or with the plausible wrong one of its
  pair (`label: false`), chosen at random (seeded), so the data is unpaired as KTO expects.
"""


KINDS_README = """# pydoc-kinds: prompts with a checkable one-word answer

Bundled GRPO data (`recipes/grpo-small.yaml`), made by `python scripts/build_preference_data.py` from
`recipes/data/pydoc-qa` (Python Software Foundation License: the text is CPython's docstrings).

- **Records:** {kinds_train} train (`train.jsonl`), {kinds_eval} eval (`eval.jsonl`), split as pydoc-qa is.
- **Format:** `{{"prompt": "Is `json.dumps` a function, a class or a method? Answer with one word.",
  "answer": "function", "source": "json.dumps"}}`: the kind is the one pydoc-qa's follow-up answer states.
"""


def kind_prompts(path: Path) -> list[dict[str, str]]:
    """A prompt per pydoc-qa record whose follow-up asks for the object's kind, with that kind as the answer."""
    prompts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        turns = record["messages"]
        found = KIND_ANSWER.search(turns[3]["content"]) if len(turns) == 4 else None
        if found and turns[2]["content"] == KIND_QUESTION:
            question = f"Is `{record['source']}` a function, a class or a method? Answer with one word."
            prompts.append({"prompt": question, "answer": found.group(1), "source": record["source"]})
    return prompts


def unpair(pairs: list[dict[str, str]], rng: random.Random) -> list[dict[str, object]]:
    """Each pair's prompt once, with its chosen answer (label true) or its rejected one (label false)."""
    records: list[dict[str, object]] = []
    for pair in pairs:
        good = rng.random() < 0.5
        answer = pair["chosen"] if good else pair["rejected"]
        records.append(
            {"prompt": pair["prompt"], "completion": answer, "label": good, "source": pair["source"]}
        )
    return records


def _write(folder: Path, name: str, records: list[dict[str, object]] | list[dict[str, str]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    (folder / name).write_text(text, encoding="utf-8")


def main() -> None:
    """Write train.jsonl, eval.jsonl and README.md under recipes/data/pydoc-pairs/ and pydoc-feedback/."""
    train = read_entries(SOURCE / "train.jsonl")
    held_out = read_entries(SOURCE / "eval.jsonl")
    pool = train + held_out
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    FEEDBACK_DIR.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    rng = random.Random(SEED)
    for split, entries, limit in (("train", train, MAX_TRAIN), ("eval", held_out, MAX_EVAL)):
        pairs = build_pairs(entries, pool, limit)
        _write(OUT_DIR, f"{split}.jsonl", pairs)
        labelled = unpair(pairs, rng)
        _write(FEEDBACK_DIR, f"{split}.jsonl", labelled)
        counts[split] = len(pairs)
        counts.setdefault("good", sum(bool(r["label"]) for r in labelled))
    KINDS_DIR.mkdir(parents=True, exist_ok=True)
    for split in ("train", "eval"):
        kinds = kind_prompts(SOURCE / f"{split}.jsonl")
        _write(KINDS_DIR, f"{split}.jsonl", kinds)
        counts[f"kinds_{split}"] = len(kinds)
    (KINDS_DIR / "README.md").write_text(KINDS_README.format(**counts), encoding="utf-8")
    (OUT_DIR / "README.md").write_text(README.format(**counts), encoding="utf-8")
    (FEEDBACK_DIR / "README.md").write_text(FEEDBACK_README.format(**counts), encoding="utf-8")
    print(f"wrote {counts['train']} train and {counts['eval']} eval pairs to {OUT_DIR} and {FEEDBACK_DIR}")


if __name__ == "__main__":
    main()
