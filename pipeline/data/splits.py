"""Load the recipe's data: sources -> validated records in conversational form -> mixture -> train/eval
splits; then tokenize them with loss masks (cached under a content key)."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError
from pipeline.formatting import TemplateMismatch, tokenize_conversation, tokenize_text
from pipeline.recipe import Recipe, SourceSpec
from pipeline.records import convert, detect_format
from pipeline.sources import read_source

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """Records of the train and eval splits in conversational form, with counts of skipped records.

    Each record is {'messages': [...], 'prompt_turns': n, 'location': 'file:line'} or
    {'text': ..., 'location': ...}; `skipped` maps a source (file or Hub id) to its count of skipped records.
    """

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    skipped: dict[str, int] = field(default_factory=dict)


def _invalid(recipe: Recipe, location: str, message: str, skipped: dict[str, int]) -> None:
    """Stop on a bad record (data.on_invalid: error) or count it as skipped."""
    if recipe.data.on_invalid == "error":
        raise DataError(f"{location}: {message}; fix the record or set data.on_invalid: skip.")
    source = location.rsplit(":", 1)[0].split("[", 1)[0]
    skipped[source] = skipped.get(source, 0) + 1


def load_source(recipe: Recipe, source: SourceSpec, skipped: dict[str, int]) -> list[dict[str, Any]]:
    """Every valid record of one source, converted from its (detected or declared) format."""
    records: list[dict[str, Any]] = []
    fmt = None if source.format == "auto" else source.format
    for location, raw in read_source(recipe, source):
        try:
            fmt = fmt or detect_format(raw)
            record = convert(raw, fmt, recipe.data.system_prompt)
        except ValueError as exc:
            _invalid(recipe, location, str(exc), skipped)
            continue
        records.append({**record, "location": location})
        if source.max_examples and len(records) >= source.max_examples and not source.weight:
            break
    if not records:
        raise DataError(f"{source.path}: no usable records; the source is empty or every record was skipped.")
    return records


def mix(parts: list[tuple[SourceSpec, list[dict[str, Any]]]], seed: int) -> list[dict[str, Any]]:
    """Combine sources. Without weights they are concatenated. With weights, the mixture keeps the total
    size (or the sum of max_examples) and gives each source its weight's share, repeating a small source
    (seeded) when its share exceeds its size."""
    if not any(spec.weight for spec, _ in parts):
        return [r for _, records in parts for r in records]
    rng = random.Random(seed)
    total = sum(spec.max_examples or len(records) for spec, records in parts)
    weights = [spec.weight or 1.0 for spec, _ in parts]
    mixed: list[dict[str, Any]] = []
    for weight, (_, records) in zip(weights, parts, strict=True):
        count = max(1, round(total * weight / sum(weights)))
        repeats, rest = divmod(count, len(records))
        mixed += records * repeats + rng.sample(records, rest)
    rng.shuffle(mixed)
    return mixed


def _load(recipe: Recipe, sources: list[SourceSpec], skipped: dict[str, int]) -> list[dict[str, Any]]:
    return mix([(s, load_source(recipe, s, skipped)) for s in sources], recipe.data.seed)


def load_splits(recipe: Recipe) -> Splits:
    """Train and eval records: eval from data.eval, or split off train (a fraction or a count, seeded)."""
    skipped: dict[str, int] = {}
    train = _load(recipe, recipe.data.train, skipped)
    eval_records = _load(recipe, recipe.data.eval, skipped) if recipe.data.eval else []
    if not eval_records and recipe.data.eval_size > 0:
        random.Random(recipe.data.seed).shuffle(train)
        size = recipe.data.eval_size
        count = int(size) if size >= 1 else max(1, round(len(train) * size))
        eval_records, train = train[:count], train[count:]
    if recipe.data.max_examples:
        train = train[: recipe.data.max_examples]
    if not train:
        raise DataError(
            "data.train: no training records left after the eval split; add data or lower data.eval_size."
        )
    if skipped:
        log.warning(
            "Skipped %d invalid record(s): %s",
            sum(skipped.values()),
            ", ".join(f"{k} ({v})" for k, v in skipped.items()),
        )
    return Splits(train=train, eval=eval_records, skipped=skipped)


def encode_record(
    record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, recipe: Recipe
) -> dict[str, Any]:
    """input_ids, assistant_masks, num_tokens and num_trained of one record (raises TemplateMismatch)."""
    if "text" in record:
        return tokenize_text(tokenizer, record["text"], recipe.train.max_length)
    return tokenize_conversation(
        tokenizer,
        record["messages"],
        recipe.train.max_length,
        recipe.train.loss_on,
        record.get("prompt_turns", 0),
    )


def _build(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    recipe: Recipe,
    desc: str,
    keep_untrained: bool,
) -> tuple[Dataset, dict[str, Any]]:
    from datasets import Dataset

    columns: dict[str, list[Any]] = {
        "input_ids": [],
        "assistant_masks": [],
        "num_tokens": [],
        "num_trained": [],
        "location": [],
    }
    skipped: dict[str, int] = {}
    untrained = 0
    for record in records:
        location = record.get("location", "record")
        try:
            row = encode_record(record, tokenizer, recipe)
        except TemplateMismatch as exc:
            _invalid(recipe, location, str(exc), skipped)
            continue
        if not any(row["assistant_masks"]) and not keep_untrained:
            untrained += 1  # every trained token was cut by max_length
            continue
        row["location"] = location
        for key, values in columns.items():
            values.append(row[key])
    if untrained:
        log.warning(
            "%s: %d example(s) had no trained token left after truncation to %d tokens and were dropped.",
            desc,
            untrained,
            recipe.train.max_length,
        )
    if not columns["input_ids"]:
        raise DataError(
            f"{desc}: no example has a trained token left; raise train.max_length or check the data."
        )
    return Dataset.from_dict(columns), {"skipped": skipped, "untrained": untrained}


def tokenize_records(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    recipe: Recipe,
    desc: str = "Tokenizing",
    skipped: dict[str, int] | None = None,
    keep_untrained: bool = False,
) -> Dataset:
    """A datasets.Dataset of input_ids and assistant_masks (plus num_tokens, num_trained, location).

    Conversations the chat template cannot render follow data.on_invalid (counted into `skipped`);
    examples with no trained token left after truncation are dropped (kept with keep_untrained, for audits).
    Results are cached (pipeline.datacache).
    """
    from pipeline.datacache import cached_dataset, content_key

    options = {
        "max_length": recipe.train.max_length,
        "loss_on": recipe.train.loss_on,
        "on_invalid": recipe.data.on_invalid,
        "keep_untrained": keep_untrained,
    }
    key = content_key(records, tokenizer, options)
    dataset, meta, hit = cached_dataset(key, lambda: _build(records, tokenizer, recipe, desc, keep_untrained))
    if hit:
        log.info("%s: reusing the tokenized data cache (%s).", desc, key)
    if skipped is not None:
        for source, count in meta["skipped"].items():
            skipped[source] = skipped.get(source, 0) + count
    return dataset
