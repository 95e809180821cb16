"""data.streaming: the stream yields the rows the whole-split path makes, in parts that accelerate hands to
each rank without overlap; a record error keeps its file:line, also when a data-loader worker raised it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, build_tiny_tokenizer, write_jsonl

from pipeline.config.schema import DataSpec, TrainSpec
from pipeline.data.splits import load_splits
from pipeline.data.streaming import open_stream, plan_parts, stream_sample, unwrap_worker_error
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import DataError

TRAIN = TrainSpec(max_length=64, max_steps=2)


def _files(folder: Path, count: int, per_file: int = 5) -> list[Path]:
    records = [{"messages": m} for m in CONVERSATIONS * 8]
    return [
        write_jsonl(folder / f"part-{n}.jsonl", records[n * per_file : (n + 1) * per_file])
        for n in range(count)
    ]


def _spec(folder: Path, **settings: Any) -> DataSpec:
    return DataSpec(train=str(folder / "*.jsonl"), eval_size=0, streaming=True, **settings)


def test_parts_make_the_shard_count_a_multiple_of_ranks_times_workers(tmp_path: Path) -> None:
    files = [(0, tmp_path / f"{n}.jsonl") for n in range(3)]
    assert len(plan_parts(files, 1)) == 3  # one process, one worker: each file read whole
    four = plan_parts(files, 4)  # e.g. 2 ranks x 2 workers: each file cut in 4
    assert len(four) == 12 and {p["parts"] for p in four} == {4}
    assert [p["part"] for p in four if p["path"].endswith("0.jsonl")] == [0, 1, 2, 3]
    assert [p["part"] for p in four[:6]] == [0, 0, 0, 1, 1, 1]  # part by part: a rank's run spans the files
    assert len(plan_parts([(0, tmp_path / f"{n}.jsonl") for n in range(4)], 2)) == 4  # 4 files, 2 ranks


def test_the_stream_yields_the_rows_of_the_whole_split(tmp_path: Path) -> None:
    _files(tmp_path, 3)
    data = _spec(tmp_path, system_prompt="Answer briefly.")
    tokenizer = build_tiny_tokenizer()
    streamed = list(open_stream(data, tokenizer, TRAIN))
    whole = tokenize_records(load_splits(data).train, tokenizer, TRAIN)
    assert len(streamed) == len(whole) == 15
    assert [r["location"] for r in streamed] == whole["location"]  # one process: the files in order
    assert [r["input_ids"] for r in streamed] == whole["input_ids"]
    assert [r["assistant_masks"] for r in streamed] == whole["assistant_masks"]


def test_accelerate_gives_each_rank_its_own_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Trainer's data loader does under a 2-rank launch: accelerate's prepare_data_loader shards a
    datasets stream with enough shards by rank (IterableDataset.shard), never reading others' batches."""
    from accelerate.data_loader import IterableDatasetShard, prepare_data_loader
    from torch.utils.data import DataLoader

    _files(tmp_path, 3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    stream = open_stream(_spec(tmp_path), build_tiny_tokenizer(), TRAIN)
    assert stream.num_shards == 6  # 3 files x 2 parts: a multiple of the 2 ranks
    seen = []
    for rank in (0, 1):
        loader = DataLoader(stream, batch_size=2, collate_fn=lambda rows: [r["location"] for r in rows])
        prepared = prepare_data_loader(loader, num_processes=2, process_index=rank, dispatch_batches=False)
        assert not isinstance(prepared.dataset, IterableDatasetShard)  # the shard path, not batch skipping
        seen.append([location for batch in prepared for location in batch])
    every = [r["location"] for r in open_stream(_spec(tmp_path), build_tiny_tokenizer(), TRAIN)]
    assert len(seen[0]) + len(seen[1]) == len(every) == 15
    assert sorted(seen[0] + seen[1]) == sorted(every) and not set(seen[0]) & set(seen[1])
    lines = {int(loc.rsplit(":", 1)[1]) for loc in seen[0] if loc.split(":")[0].endswith("part-0.jsonl")}
    assert lines == {1, 3, 5}  # rank 0 parses every other line of part-0.jsonl, from the first
    assert all(int(loc.rsplit(":", 1)[1]) % 2 == 0 for loc in seen[1])  # rank 1: the others, in every file


def test_the_shuffled_training_stream_still_splits_by_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What training reads (pipeline.train.inputs: the stream through a shuffle buffer, parts in seeded order):
    each rank still gets its own records, together all of them, in an order other than the files'."""
    from accelerate.data_loader import IterableDatasetShard, prepare_data_loader
    from torch.utils.data import DataLoader

    from pipeline.train.inputs import STREAM_SHUFFLE

    _files(tmp_path, 3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    stream = open_stream(_spec(tmp_path), build_tiny_tokenizer(), TRAIN)
    shuffled = stream.shuffle(seed=42, buffer_size=STREAM_SHUFFLE)
    seen = []
    for rank in (0, 1):
        loader = DataLoader(shuffled, batch_size=2, collate_fn=lambda rows: [r["location"] for r in rows])
        prepared = prepare_data_loader(loader, num_processes=2, process_index=rank, dispatch_batches=False)
        assert not isinstance(prepared.dataset, IterableDatasetShard)
        seen.append([location for batch in prepared for location in batch])
    every = [r["location"] for r in stream]
    assert sorted(seen[0] + seen[1]) == sorted(every) and not set(seen[0]) & set(seen[1])
    assert seen[0] + seen[1] != every


def test_parquet_files_stream_with_their_row_locations(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "qa.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"prompt": "Explain os.path.join.", "completion": "It joins."}] * 3), path
    )
    data = DataSpec(train=str(path), eval_size=0, streaming=True)
    rows = list(open_stream(data, build_tiny_tokenizer(), TRAIN))
    assert [r["location"].rsplit("/", 1)[1] for r in rows] == [
        "qa.parquet[0]",
        "qa.parquet[1]",
        "qa.parquet[2]",
    ]
    assert all(sum(r["assistant_masks"]) > 0 for r in rows)


def test_a_bad_record_in_a_data_loader_worker_comes_back_as_its_one_line(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    good = [{"messages": m} for m in CONVERSATIONS]
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}
    write_jsonl(tmp_path / "bad.jsonl", [*good[:2], bad, *good])
    stream = open_stream(_spec(tmp_path), build_tiny_tokenizer(), TRAIN)
    with pytest.raises(DataError) as raised:
        list(DataLoader(stream, batch_size=2, num_workers=1, collate_fn=list))
    assert "Traceback" in str(raised.value)  # torch wrapped it with the worker's traceback
    error = unwrap_worker_error(raised.value)
    assert isinstance(error, DataError) and "\n" not in str(error)
    assert str(error).startswith(f"{tmp_path / 'bad.jsonl'}:3: messages[1].role must be one of")
    assert (
        unwrap_worker_error(DataError("plain")) is not None
        and str(unwrap_worker_error(DataError("x"))) == "x"
    )


def test_the_sample_checks_the_first_records_and_skip_counts_apart(tmp_path: Path) -> None:
    bad = {"messages": [{"role": "user", "content": "hi"}]}
    write_jsonl(tmp_path / "a.jsonl", [bad, *[{"messages": m} for m in CONVERSATIONS]])
    with pytest.raises(DataError, match=r"a\.jsonl:1: messages has no assistant turn"):
        stream_sample(open_stream(_spec(tmp_path), build_tiny_tokenizer(), TRAIN))
    kept = stream_sample(open_stream(_spec(tmp_path, on_invalid="skip"), build_tiny_tokenizer(), TRAIN))
    assert len(kept) == 4 and kept[0]["location"].endswith("a.jsonl:2")


def test_only_local_jsonl_and_parquet_stream(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("[]", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.json: data\.streaming reads \.jsonl and \.parquet files"):
        open_stream(DataSpec(train=str(tmp_path / "a.json"), eval_size=0, streaming=True), None, TRAIN)
    with pytest.raises(DataError, match=r"some-org/some-set: data\.streaming reads local JSONL or Parquet"):
        open_stream(DataSpec(train="some-org/some-set", eval_size=0, streaming=True), None, TRAIN)
