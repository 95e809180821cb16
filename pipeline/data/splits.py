"""Load the recipe's data: sources -> validated records in conversational form -> mixture -> train/eval
splits (pipeline.data.tokenize turns them into token ids and loss masks)."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pipeline.config.schema import DataSpec, SourceSpec
from pipeline.data.pairs import PAIR_FORMATS, convert_preference
from pipeline.data.progress import counted
from pipeline.data.records import convert, detect_format
from pipeline.data.sources import Located, read_source
from pipeline.errors import DataError

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


def invalid_record(on_invalid: str, location: str, message: str, skipped: dict[str, int]) -> None:
    """Stop on a bad record (data.on_invalid: error) or count it as skipped."""
    if on_invalid == "error":
        raise DataError(f"{location}: {message}; fix the record or set data.on_invalid: skip.")
    source = location.rsplit(":", 1)[0].split("[", 1)[0]
    skipped[source] = skipped.get(source, 0) + 1


def valid_records(
    data: DataSpec, source: SourceSpec, rows: Iterable[Located], skipped: dict[str, int]
) -> Iterator[dict[str, Any]]:
    """The records of (location, raw record) rows converted from the source's (detected or declared) format,
    each with its location; a bad one stops with its location or is counted (data.on_invalid)."""
    fmt = None if source.format == "auto" else source.format
    for location, raw in rows:
        try:
            fmt = fmt or detect_format(raw)
            if fmt in PAIR_FORMATS:
                record = convert_preference(raw, fmt, data.system_prompt)
            else:
                record = convert(raw, fmt, data.system_prompt)
        except ValueError as exc:
            invalid_record(data.on_invalid, location, str(exc), skipped)
            continue
        yield {**record, "location": location}


def load_source(data: DataSpec, source: SourceSpec, skipped: dict[str, int]) -> list[dict[str, Any]]:
    """Every valid record of one source, converted from its (detected or declared) format."""
    records: list[dict[str, Any]] = []
    rows = counted(read_source(data, source), f"Reading and validating {source.path}")
    for record in valid_records(data, source, rows, skipped):
        records.append(record)
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


def load_sources(data: DataSpec, sources: list[SourceSpec], skipped: dict[str, int]) -> list[dict[str, Any]]:
    """The records of several sources, mixed per their weights (see mix)."""
    return mix([(s, load_source(data, s, skipped)) for s in sources], data.seed)


def load_splits(data: DataSpec) -> Splits:
    """Train and eval records: eval from data.eval, or split off train (a fraction or a count, seeded)."""
    skipped: dict[str, int] = {}
    train = load_sources(data, data.train, skipped)
    eval_records = load_sources(data, data.eval, skipped) if data.eval else []
    if not eval_records and data.eval_size > 0:
        random.Random(data.seed).shuffle(train)
        size = data.eval_size
        count = int(size) if size >= 1 else max(1, round(len(train) * size))
        eval_records, train = train[:count], train[count:]
    if data.max_examples:
        train = train[: data.max_examples]
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
