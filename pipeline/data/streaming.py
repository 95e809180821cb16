"""data.streaming: the training split as a stream of local JSONL/Parquet files, never held whole.

Each file is cut into parts (every n-th line or row), so the stream has a shard count that is a multiple of
ranks x data-loader workers: under `accelerate launch` the Trainer's data loader gives each rank its own
shards (accelerate's `IterableDataset.shard(world, rank)` for a `datasets` stream with enough shards),
and datasets gives each data-loader worker its own parts of those. A worker reads its parts, validates and
converts the records (pipeline.data.splits.valid_records) and encodes them in small batches
(pipeline.data.encode.encode_chunk), so a bad record still stops the run at its `file:line`.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.encode import SCHEMA, encode_chunk
from pipeline.data.sources import local_files, read_file, renamed
from pipeline.data.splits import valid_records
from pipeline.data.tokenize import settle_failures
from pipeline.errors import DataError, PipelineError
from pipeline.ranks import world_size

if TYPE_CHECKING:
    from collections.abc import Iterator

    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedTokenizerBase

    from pipeline.config.schema import DataSpec, TrainSpec

log = logging.getLogger(__name__)
STREAM_SUFFIXES = (".jsonl", ".parquet")
BATCH = 64  # records a worker validates and encodes together (a few template calls, one tokenizer call)
SAMPLE = 256  # first records checked before training and shown on the run's data-audit page


def stream_workers(data: DataSpec) -> int:
    """Data-loader worker processes that read, check and tokenize the stream (data.num_proc, default 1: the
    other cores train)."""
    return data.num_proc or 1


def stream_files(data: DataSpec) -> list[tuple[int, Path]]:
    """(index of its source in data.train, path) of every file the streamed training split reads; anything
    but local JSONL/Parquet files is a DataError naming the source."""
    found: list[tuple[int, Path]] = []
    for index, source in enumerate(data.train):
        files = local_files(data, source)
        if files is None:
            raise DataError(
                f"{source.path}: data.streaming reads local JSONL or Parquet files (a file, folder or glob), "
                "not a Hub data set; download it to files or set data.streaming: false."
            )
        if not files:
            raise DataError(f"{source.path}: the folder holds no data file; check data.train.")
        for path in files:
            if path.suffix.lower() not in STREAM_SUFFIXES:
                raise DataError(
                    f"{path}: data.streaming reads {' and '.join(STREAM_SUFFIXES)} files; convert it "
                    "(one JSON object per line) or set data.streaming: false."
                )
            found.append((index, path))
    return found


def plan_parts(files: list[tuple[int, Path]], shares: int) -> list[dict[str, Any]]:
    """The stream's shards: each file cut into the fewest parts that make the count a multiple of `shares`
    (ranks x workers), so every rank and worker gets as many parts; a part is every parts-th record. Listed
    part by part (every file's first part, then every second part ...): accelerate gives each rank a
    contiguous run of shards, so the parts of one file go to different ranks."""
    parts = shares // math.gcd(len(files), shares)
    return [
        {"source": index, "path": str(path), "part": part, "parts": parts}
        for part in range(parts)
        for index, path in files
    ]


def _encoded(
    batch: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    options: dict[str, Any],
    skipped: dict[str, int],
    verdicts: dict[str, str | None],
) -> list[dict[str, Any]]:
    """The training rows of a batch of records (bad ones stopped or counted; rows without a trained token
    left after truncation dropped, as in the whole-split path)."""
    chunk = encode_chunk(batch, 0, tokenizer, options)
    settle_failures(batch, chunk.failures, tokenizer, options["on_invalid"], skipped, verdicts)
    return chunk.table.to_pylist()


def _rows(
    shards: list[dict[str, Any]], data: DataSpec, tokenizer: PreTrainedTokenizerBase, options: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The generator of the stream: the training rows of the given parts, in order (datasets hands each
    data-loader worker its own list of parts)."""
    verdicts: dict[str, str | None] = {}
    for shard in shards:
        source, skipped = data.train[shard["source"]], {}
        rows = renamed(source, read_file(Path(shard["path"]), shard["part"], shard["parts"]))
        batch: list[dict[str, Any]] = []
        for record in valid_records(data, source, rows, skipped):
            batch.append(record)
            if len(batch) == BATCH:
                yield from _encoded(batch, tokenizer, options, skipped, verdicts)
                batch = []
        if batch:
            yield from _encoded(batch, tokenizer, options, skipped, verdicts)
        if skipped:
            log.warning(
                "Skipped %d invalid record(s) of %s (part %d of %d) while streaming.",
                sum(skipped.values()),
                shard["path"],
                shard["part"] + 1,
                shard["parts"],
            )


def open_stream(data: DataSpec, tokenizer: PreTrainedTokenizerBase, train: TrainSpec) -> IterableDataset:
    """The training split as a datasets.IterableDataset of input_ids and assistant_masks (plus num_tokens,
    num_trained, location), sharded for the run's ranks x stream_workers(data) data-loader workers."""
    from datasets import Features, IterableDataset

    options = {
        "max_length": train.max_length,
        "loss_on": train.loss_on,
        "on_invalid": data.on_invalid,
        "keep_untrained": False,
    }
    shards = plan_parts(stream_files(data), world_size() * stream_workers(data))
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the workers are the parallelism; avoids fork warnings
    return IterableDataset.from_generator(
        partial(_rows, data=data, tokenizer=tokenizer, options=options),
        features=Features.from_arrow_schema(SCHEMA),
        gen_kwargs={"shards": shards},
    )


def stream_sample(stream: IterableDataset, count: int | None = None) -> Dataset:
    """The stream's first `count` (default SAMPLE) rows, read here: checked before any weight loads, and what
    the run's data-audit page shows."""
    from datasets import Dataset

    rows = list(islice(iter(stream), count or SAMPLE))
    if not rows:
        raise DataError("data.train: the stream holds no example with a trained token; check the files.")
    return Dataset.from_list(rows, features=stream.features)


def unwrap_worker_error(error: PipelineError) -> PipelineError:
    """A pipeline error raised in a data-loader worker as its own one line again: torch re-raises it in the
    main process with the worker's traceback as its message."""
    lines = str(error).splitlines()
    if not lines or not (lines[0].startswith("Caught ") and "worker" in lines[0]):
        return error
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    own = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    return type(error)(own[-1]) if own else error
