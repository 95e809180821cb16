"""Encode many records fast and in bounded memory: chat templates rendered per record, the tokenizer called once
per chunk of records, loss masks computed with numpy, and large splits split into chunks that worker
processes (data.num_proc) encode into Arrow shards on disk, which the result memory-maps.

Records that fail come back as (index, TemplateMismatch message), in record order, so the caller applies
data.on_invalid exactly as a one-by-one loop would.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.data.formatting import (
    TemplateMismatch,
    masked_row,
    render_many,
    select_spans,
    span_renders,
    spans_from,
    trained_spans,
)
from pipeline.data.workers import map_chunks

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

CHUNK = 2000  # records per worker task: ~1 s of work, a ~1 MB Arrow shard
PARALLEL_MIN = 4 * CHUNK  # below this, one process (no fork, no shards) is faster
SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("assistant_masks", pa.list_(pa.int8())),
        ("num_tokens", pa.int64()),
        ("num_trained", pa.int64()),
        ("location", pa.string()),
    ]
)


def render_batch(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, loss_on: str
) -> list[tuple[str, list[tuple[int, int]]] | TemplateMismatch] | None:
    """trained_spans of each conversation record without tools, from three batched template calls (the
    conversations, the prompts before assistant turns, the cuts after them); None when a call fails, so the
    caller renders record by record and learns which one the template refuses."""
    conversations = [r["messages"] for r in records]
    needs = [span_renders(m) for m in conversations]
    prompt_jobs = [(n, i) for n, (prompts, _) in enumerate(needs) for i in prompts]
    cut_jobs = [(n, i) for n, (_, cuts) in enumerate(needs) for i in cuts]
    try:
        fulls = render_many(tokenizer, conversations)
        prompts = render_many(tokenizer, [conversations[n][:i] for n, i in prompt_jobs], True)
        cuts = render_many(tokenizer, [conversations[n][: i + 1] for n, i in cut_jobs])
    except TemplateMismatch:
        return None
    by_prompt: list[dict[int, str]] = [{} for _ in records]
    by_cut: list[dict[int, str]] = [{} for _ in records]
    for (n, i), text in zip(prompt_jobs, prompts, strict=True):
        by_prompt[n][i] = text
    for (n, i), text in zip(cut_jobs, cuts, strict=True):
        by_cut[n][i] = text
    results: list[tuple[str, list[tuple[int, int]]] | TemplateMismatch] = []
    for n, record in enumerate(records):
        try:
            spans = spans_from(conversations[n], fulls[n], by_prompt[n], by_cut[n])
        except TemplateMismatch as exc:
            results.append(exc)
            continue
        results.append(
            (fulls[n], select_spans(record["messages"], spans, loss_on, record.get("prompt_turns", 0)))
        )
    return results


def _render_one(
    record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, loss_on: str
) -> tuple[str, list[tuple[int, int]]] | TemplateMismatch:
    try:
        return trained_spans(
            tokenizer, record["messages"], loss_on, record.get("prompt_turns", 0), record.get("tools")
        )
    except TemplateMismatch as exc:
        return exc


def encode_records(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int, loss_on: str
) -> list[dict[str, Any] | TemplateMismatch]:
    """The training row of each record (see formatting.tokenize_conversation), or the TemplateMismatch that
    stopped it; conversations without tools are rendered in batches, and the tokenizer is called once."""
    results: list[dict[str, Any] | TemplateMismatch] = [TemplateMismatch("not encoded")] * len(records)
    renders: dict[int, tuple[str, list[tuple[int, int]] | None] | TemplateMismatch] = {}
    plain = [n for n, r in enumerate(records) if "messages" in r and not r.get("tools")]
    batch = render_batch([records[n] for n in plain], tokenizer, loss_on) if plain else []
    if batch is not None:
        renders.update(zip(plain, batch, strict=True))
    for index, record in enumerate(records):
        if "text" in record:
            renders[index] = (record["text"], None)
        elif index not in renders:
            renders[index] = _render_one(record, tokenizer, loss_on)
    rendered = []
    for index in range(len(records)):
        done = renders[index]
        if isinstance(done, TemplateMismatch):
            results[index] = done
        else:
            rendered.append((index, *done))
    if not rendered:
        return results
    for (index, _, spans), (ids, offsets) in zip(
        rendered, _encode([t for _, t, _ in rendered], tokenizer), strict=True
    ):
        if spans is None:  # plain text: every token and a closing EOS carry the loss
            results[index] = masked_row([*ids, tokenizer.eos_token_id], None, [], "all", max_length)
        else:
            results[index] = masked_row(ids, offsets, spans, loss_on, max_length)
    return results


def _encode(texts: list[str], tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[Any]]]:
    """(ids, character offsets) of each text without added special tokens: the `tokenizers` backend directly
    when there is one (the same encodings tokenizer(...) returns, without converting them one by one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))


@dataclass
class Chunk:
    """What encoding one chunk produced: the kept rows as an Arrow table, failures, untrained drops."""

    table: pa.Table
    failures: list[tuple[int, str]] = field(default_factory=list)
    untrained: int = 0


def encode_chunk(
    records: list[dict[str, Any]],
    start: int,
    tokenizer: PreTrainedTokenizerBase,
    options: dict[str, Any],
) -> Chunk:
    """Encode records[start:start+CHUNK] into a Chunk (rows without a trained token dropped unless kept)."""
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    failures, untrained = [], 0
    part = records[start : start + CHUNK]
    for offset, row in enumerate(encode_records(part, tokenizer, options["max_length"], options["loss_on"])):
        if isinstance(row, TemplateMismatch):
            failures.append((start + offset, str(row)))
            continue
        if not options["keep_untrained"] and not any(row["assistant_masks"]):
            untrained += 1  # every trained token was cut by max_length
            continue
        row["location"] = part[offset].get("location", "record")
        for name, values in columns.items():
            values.append(row[name])
    return Chunk(pa.table(columns, schema=SCHEMA), failures, untrained)


def shard_folder() -> Path:
    """A fresh folder for Arrow shards beside the data cache (same file system, so storing is cheap)."""
    from pipeline.models.assets import cache_dir

    parent = cache_dir() / "datasets"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="shards-", dir=parent))


def encode_split(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    options: dict[str, Any],
    desc: str,
    num_proc: int,
) -> tuple[Dataset, list[tuple[int, str]], int, Path | None]:
    """All records encoded: (dataset, failures in record order, untrained drops, shard folder or None).

    Large splits are encoded by `num_proc` forked workers into Arrow shards in the returned folder, which the
    dataset memory-maps: the caller removes it once the dataset is stored elsewhere (or at exit)."""
    from datasets import Dataset, concatenate_datasets
    from datasets.table import InMemoryTable

    folder = shard_folder() if len(records) >= PARALLEL_MIN else None

    def work(items: list[dict[str, Any]], start: int, number: int) -> tuple[Any, list[tuple[int, str]], int]:
        chunk = encode_chunk(items, start, tokenizer, options)
        if folder is None:
            return chunk.table, chunk.failures, chunk.untrained
        path = str(folder / f"shard-{number:06d}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
            writer.write_table(chunk.table)
        return path, chunk.failures, chunk.untrained

    failures: list[tuple[int, str]] = []
    untrained, parts = 0, []
    try:
        for part, chunk_failures, chunk_untrained in map_chunks(
            work, records, CHUNK, num_proc, desc, PARALLEL_MIN
        ):
            parts.append(part)
            failures += chunk_failures
            untrained += chunk_untrained
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if folder is None:
        return Dataset(InMemoryTable(pa.concat_tables(parts))), failures, untrained, None
    return concatenate_datasets([Dataset.from_file(path) for path in parts]), failures, untrained, folder
