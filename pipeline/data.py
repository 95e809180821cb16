"""Load training and eval records from local files into conversational form, validating every record."""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError
from pipeline.formatting import Messages, tokenize_conversation, tokenize_text
from pipeline.recipe import DataSpec, Recipe, SourceSpec

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant")


@dataclass
class Splits:
    """Records of the train and eval splits in conversational form, with counts of skipped records."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)


def _files(recipe: Recipe, source: SourceSpec) -> list[Path]:
    pattern = recipe.resolve_path(source.path)
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json"))
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    if not matches:
        raise DataError(f"{source.path}: no such data file; check data.train / data.eval in the recipe.")
    return matches


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    """(location, record) pairs, where location is 'file:line'."""
    records = []
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    records.append((f"{path}:{number}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: invalid JSON ({exc.msg}); each line must be one JSON object.") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; give a JSONL file with one JSON object per line.") from None
    return records


def check_messages(messages: Any) -> Messages:
    """Validate an OpenAI-style message list; raises ValueError naming the bad field."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {role, content} objects")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"messages[{index}] must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{index}].role must be one of {', '.join(ROLES)} (got {role!r})")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"messages[{index}].content must be a non-empty string")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("the conversation has no assistant turn to train on")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def to_conversation(record: Any, spec: DataSpec) -> dict[str, Any]:
    """A record in conversational form: {'messages': [...]}, with the recipe's system prompt injected."""
    if not isinstance(record, dict):
        raise ValueError("each record must be a JSON object")
    if "messages" not in record:
        raise ValueError(f"no 'messages' field (fields: {', '.join(sorted(record)) or 'none'})")
    messages = check_messages(record["messages"])
    if spec.system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": spec.system_prompt}, *messages]
    return {"messages": messages}


def load_source(recipe: Recipe, source: SourceSpec, skipped: dict[str, int]) -> list[dict[str, Any]]:
    """Every valid record of one source, in conversational form."""
    records = []
    for path in _files(recipe, source):
        for location, raw in _read_jsonl(path):
            try:
                records.append(to_conversation(raw, recipe.data))
            except ValueError as exc:
                if recipe.data.on_invalid == "error":
                    raise DataError(f"{location}: {exc}; fix the record or set data.on_invalid: skip.") from None
                skipped[str(path)] = skipped.get(str(path), 0) + 1
    if source.max_examples:
        records = records[: source.max_examples]
    if not records:
        raise DataError(f"{source.path}: no usable records; the file is empty or every record was skipped.")
    return records


def load_splits(recipe: Recipe) -> Splits:
    """Train and eval records for a recipe: eval from data.eval, or split off train (seeded)."""
    import random

    skipped: dict[str, int] = {}
    train = [r for s in recipe.data.train for r in load_source(recipe, s, skipped)]
    eval_records = [r for s in recipe.data.eval for r in load_source(recipe, s, skipped)]
    if not eval_records and recipe.data.eval_size > 0:
        random.Random(recipe.data.seed).shuffle(train)
        size = recipe.data.eval_size
        count = int(size) if size >= 1 else max(1, round(len(train) * size))
        eval_records, train = train[:count], train[count:]
    if recipe.data.max_examples:
        train = train[: recipe.data.max_examples]
    if not train:
        raise DataError("data.train: no training records left after the eval split; add data or lower data.eval_size.")
    return Splits(train=train, eval=eval_records, skipped=skipped)


def tokenize_records(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, recipe: Recipe, desc: str = "Tokenizing"
) -> Dataset:
    """A datasets.Dataset of input_ids and assistant_masks; examples with no trained token are dropped."""
    from datasets import Dataset

    def encode(record: dict[str, Any]) -> dict[str, Any]:
        if "text" in record:
            return tokenize_text(tokenizer, record["text"], recipe.train.max_length)
        return tokenize_conversation(tokenizer, record["messages"], recipe.train.max_length, recipe.train.loss_on)

    raw = Dataset.from_list(records)
    dataset = raw.map(encode, remove_columns=raw.column_names, desc=desc)
    before = len(dataset)
    dataset = dataset.filter(lambda row: any(row["assistant_masks"]), desc="Dropping untrained examples")
    if len(dataset) < before:
        log.warning("%d example(s) had no trained token after truncation to %d and were dropped.",
                    before - len(dataset), recipe.train.max_length)
    if len(dataset) == 0:
        raise DataError(f"{desc}: every example lost all trained tokens; raise train.max_length.")
    return dataset
