"""Build the bundled tool-calling data set (tool-calls) from Python standard-library functions.

Each tool is a real stdlib function: its description is the function's own docstring (PSF licence), its
parameters a JSON schema (both in scripts/stdlib_tools.py). A conversation asks a question the function
answers, the assistant calls it (OpenAI-style `tool_calls`, arguments as a JSON string), the tool output is
the function's real return value (computed here by calling it), and the assistant answers from it. Some
records offer tools but need none (a question about what a function does, answered from its docstring);
some make two calls in one turn; some ask a follow-up that needs a second call. Every record lists the
tools it needs plus one or two others, so the model learns to pick.

Writes recipes/data/tool-calls/ (train.jsonl, eval.jsonl, README.md). Deterministic for a given Python
version (``random.Random(SEED)``). Run from anywhere: ``python scripts/build_tool_data.py``
"""

from __future__ import annotations

import json
import random
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

from stdlib_tools import DAYS, MONTHS, TOOLS, Tool, describe

OUT_DIR = Path(__file__).resolve().parent.parent / "recipes" / "data" / "tool-calls"
SEED, TRAIN_COUNT, EVAL_COUNT = 4321, 512, 48
# Eval records stay below this word-3-gram Jaccard similarity to every train record: the recipe's
# contamination check flags >= 0.8 with a MinHash estimate (standard error ~0.09), hence the margin.
EVAL_MAX_SIMILARITY = 0.5
NO_TOOL_RATE, PARALLEL_RATE, FOLLOW_UP_RATE = 0.12, 0.10, 0.15


def _fields(tool: Tool, arguments: dict[str, Any], result: Any = None) -> dict[str, Any]:
    """Values the question and answer templates refer to."""
    fields: dict[str, Any] = {**arguments, "result": result, "shown": tool.shown}
    if "month" in arguments:
        fields["month_name"] = MONTHS[arguments["month"]]
    if tool.name == "calendar_weekday" and result is not None:
        fields["result_day"] = DAYS[result]
    if tool.name == "calendar_monthrange" and result is not None:
        fields["first_day"] = DAYS[result[0]]
    if tool.name == "os_path_splitext" and result is not None:
        fields["extension"] = f"'{result[1]}'" if result[1] else "empty (there is none)"
    if tool.name == "difflib_get_close_matches" and result is not None:
        fields["matches"] = f"'{result[0]}'" if result else "none of them"
    return fields


def _format(template: str, fields: dict[str, Any]) -> str:
    """str.format with {value:yes|no} for booleans."""

    def pick(match: re.Match[str]) -> str:
        value = _lookup(fields, match.group(1))
        yes, no = match.group(2).split("|")
        return yes if value else no

    return re.sub(r"\{([\w\[\]]+):([^{}|]*\|[^{}]*)\}", pick, template).format(**fields)


def _lookup(fields: dict[str, Any], key: str) -> Any:
    name, *items = re.split(r"[\[\]]+", key.strip("]"))
    value = fields[name]
    for item in items:
        value = value[int(item)] if item.isdigit() else value[item]
    return value


def _call(tool: Tool, rng: random.Random, number: int) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """A question, the call, the tool's output message and the answer sentence for one use of a tool."""
    arguments = tool.arguments(rng)
    result = tool.run(*arguments.values())  # C functions take no keywords; arguments follow the schema order
    fields = _fields(tool, arguments, result)
    question = _format(rng.choice(tool.questions), fields)
    call = {
        "id": f"call_{number}",
        "type": "function",
        "function": {"name": tool.name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }
    output = {
        "role": "tool",
        "tool_call_id": f"call_{number}",
        "name": tool.name,
        "content": json.dumps(result, ensure_ascii=False),
    }
    return question, call, output, _format(tool.answer, fields)


def _offered(needed: list[Tool], rng: random.Random) -> list[dict[str, Any]]:
    """The needed tools plus one or two others, shuffled."""
    others = rng.sample([t for t in TOOLS if t not in needed], rng.randint(1, 2))
    offered = needed + others
    rng.shuffle(offered)
    return [t.schema() for t in offered]


def _exchange(
    question: str, calls: list[dict[str, Any]], outputs: list[dict[str, Any]], answer: str
) -> list[Any]:
    """A user question, the assistant's tool calls (no text), the outputs and the final answer."""
    return [
        {"role": "user", "content": question},
        {"role": "assistant", "content": None, "tool_calls": calls},
        *outputs,
        {"role": "assistant", "content": answer},
    ]


def build_record(rng: random.Random) -> dict[str, Any]:
    """One conversation: a direct answer, one call, two calls in one turn, or a call and a follow-up call."""
    roll = rng.random()
    if roll < NO_TOOL_RATE:
        tool = rng.choice(TOOLS)
        question = rng.choice(["What does `{}` do?", "What is `{}` for?", "Explain `{}` briefly."])
        answer = f"`{tool.shown}`: {describe(tool.function)}"
        messages = [
            {"role": "user", "content": question.format(tool.shown)},
            {"role": "assistant", "content": answer},
        ]
        return {"messages": messages, "tools": _offered([tool], rng), "source": tool.shown}
    first, second = rng.sample(TOOLS, 2)
    question, call, output, answer = _call(first, rng, 1)
    if roll >= NO_TOOL_RATE + PARALLEL_RATE + FOLLOW_UP_RATE:
        messages = _exchange(question, [call], [output], answer)
        return {"messages": messages, "tools": _offered([first], rng), "source": first.shown}
    question2, call2, output2, answer2 = _call(second, rng, 2)
    if roll < NO_TOOL_RATE + PARALLEL_RATE:  # both in one turn
        both = f"{question} Also, {question2[0].lower()}{question2[1:]}"
        messages = _exchange(both, [call, call2], [output, output2], f"{answer} {answer2}")
    else:  # a follow-up question
        messages = _exchange(question, [call], [output], answer) + _exchange(
            question2, [call2], [output2], answer2
        )
    return {
        "messages": messages,
        "tools": _offered([first, second], rng),
        "source": f"{first.shown},{second.shown}",
    }


def write_card(train: list[dict[str, Any]], evals: list[dict[str, Any]]) -> None:
    """Write README.md: source, licence, method, counts, format."""

    def calls(records: list[dict[str, Any]]) -> int:
        return sum(len(m.get("tool_calls") or []) for r in records for m in r["messages"])

    version = ".".join(map(str, sys.version_info[:3]))
    direct = sum(1 for r in train if not any(m.get("tool_calls") for m in r["messages"]))
    tools = ", ".join(f"`{t.shown}`" for t in TOOLS)
    card = f"""# tool-calls: function calling with Python standard-library tools

Bundled tool-calling data for `recipes/tools-small.yaml`: short conversations in which the assistant calls
real Python standard-library functions, offered as OpenAI-style tools, and answers from their output.

- **Licence:** tool descriptions are the functions' docstrings from CPython {version}, under the
  Python Software Foundation License (https://docs.python.org/3/license.html); the rest (questions,
  parameter schemas, answer sentences) is generated by `scripts/build_tool_data.py` in this repository
  and shares its licence (Apache-2.0).
  Tool outputs are the functions' real return values, computed when the data was built.
- **Made by:** `python scripts/build_tool_data.py` (stdlib only, `random.Random({SEED})`); docstrings vary
  by Python version: rebuild with {version} to reproduce byte for byte.
- **Records:** {len(train)} train (`train.jsonl`), {len(evals)} eval (`eval.jsonl`); {calls(train)} tool calls in
  train; {direct} train records offer tools but need none (the answer is the docstring). No two records
  are the same text, and every eval record is unlike every train record (word 3-gram Jaccard below
  {EVAL_MAX_SIMILARITY}), so the recipe's contamination check passes.

## Format

One JSON object per line, OpenAI chat format: `{{"messages": [...], "tools": [...], "source": "math.gcd"}}`.
An assistant turn that calls tools has `"content": null` and `"tool_calls": [{{"id", "type": "function",
"function": {{"name", "arguments": "<JSON string>"}}}}]`; each output is a `{{"role": "tool", "tool_call_id",
"name", "content": "<JSON>"}}` turn; `tools` lists the needed tools plus one or two others. Some turns make
two calls at once; some conversations ask a follow-up that needs a second call.

Tools ({len(TOOLS)}): {tools}.
"""
    (OUT_DIR / "README.md").write_text(card, encoding="utf-8")


def shingles(record: dict[str, Any]) -> frozenset[str]:
    """Word 3-grams of a record's text, normalised the way pipeline.data.hygiene judges duplicates."""
    text = "\n".join(m["content"] or "" for m in record["messages"])
    words = re.sub(r"[^\w]+", " ", unicodedata.normalize("NFKC", text).casefold()).split()
    return frozenset(" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2)))


def build_splits(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct train records, then eval records unlike any train record (and each other)."""
    train: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()
    while len(train) < TRAIN_COUNT:
        record = build_record(rng)
        if (grams := shingles(record)) not in seen:
            seen.add(grams)
            train.append(record)
    evals: list[dict[str, Any]] = []
    while len(evals) < EVAL_COUNT:
        record = build_record(rng)
        grams = shingles(record)
        if all(len(grams & other) / len(grams | other) < EVAL_MAX_SIMILARITY for other in seen):
            seen.add(grams)
            evals.append(record)
    return train, evals


def main() -> None:
    """Build the records, split off eval, write the files."""
    train, evals = build_splits(random.Random(SEED))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("eval.jsonl", evals)):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    write_card(train, evals)
    size = sum(p.stat().st_size for p in OUT_DIR.iterdir())
    print(f"{len(train)} train, {len(evals)} eval records, {size / 1024:.0f} KiB in {OUT_DIR}")


if __name__ == "__main__":
    main()
