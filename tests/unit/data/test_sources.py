"""Data sources: local file types, folders and globs, column mapping, Hub ids, mixtures and splits."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.errors import DataError

ALPACA = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(6)]


def _recipe(make_recipe: Any, train: Any, **data: Any) -> Any:
    spec = {"train": train, "eval": [], "eval_size": 0, **data}
    return load_recipe(str(make_recipe(data=spec)))


def _answers(records: list[dict[str, Any]]) -> list[str]:
    return [r["messages"][-1]["content"] for r in records]


def test_json_csv_parquet_give_the_same_records(make_recipe: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    json_path = tmp_path / "a.json"
    json_path.write_text(json.dumps(ALPACA), encoding="utf-8")
    csv_path = tmp_path / "a.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ALPACA[0]))
        writer.writeheader()
        writer.writerows(ALPACA)
    parquet_path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ALPACA), parquet_path)
    expected = [f"Answer {i}." for i in range(6)]
    for path in (json_path, csv_path, parquet_path):
        assert _answers(load_splits(_recipe(make_recipe, str(path)).data).train) == expected
    locations = [r["location"] for r in load_splits(_recipe(make_recipe, str(csv_path)).data).train]
    assert locations[:2] == [f"{csv_path}:2", f"{csv_path}:3"]  # line 1 is the CSV header


def test_sharegpt_messages_in_a_csv_cell_as_json(make_recipe: Any, tmp_path: Path) -> None:
    path = tmp_path / "chat.csv"
    turns = [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["conversations"])
        writer.writerow([json.dumps(turns)])
    records = load_splits(_recipe(make_recipe, str(path)).data).train
    assert records[0]["messages"] == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
    ]


def test_plain_text_paragraphs_become_text_records(make_recipe: Any, tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("First paragraph\nstill first.\n\n\nSecond one.\n", encoding="utf-8")
    records = load_splits(_recipe(make_recipe, str(path)).data).train
    assert [r["text"] for r in records] == ["First paragraph\nstill first.", "Second one."]
    assert [r["location"] for r in records] == [f"{path}:1", f"{path}:5"]


def test_folder_and_glob_and_column_mapping(make_recipe: Any, tmp_path: Path) -> None:
    renamed = [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(3)]
    write_jsonl(tmp_path / "shards" / "part-0.jsonl", renamed)
    write_jsonl(tmp_path / "shards" / "part-1.jsonl", renamed)
    columns = {"question": "prompt", "answer": "completion"}
    folder = _recipe(make_recipe, [{"path": str(tmp_path / "shards"), "columns": columns}])
    pattern = _recipe(make_recipe, [{"path": str(tmp_path / "shards" / "*-1.jsonl"), "columns": columns}])
    assert _answers(load_splits(folder.data).train) == ["A0.", "A1.", "A2."] * 2
    assert _answers(load_splits(pattern.data).train) == ["A0.", "A1.", "A2."]


def test_missing_file_is_a_clear_error(make_recipe: Any, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.jsonl: no such data file"):
        load_splits(_recipe(make_recipe, str(tmp_path / "nope.jsonl")).data)
    (tmp_path / "data").mkdir(exist_ok=True)
    with pytest.raises(DataError, match=r"^data/trian: no such data file or folder"):
        load_splits(_recipe(make_recipe, "data/trian").data)  # a local folder typo, not a Hub id


def test_hub_id_goes_through_load_dataset_with_config_split_revision(
    make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    calls = []

    def fake_load_dataset(path: str, name: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_list(ALPACA[:2])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = {"path": "someorg/alpaca-like", "config": "en", "split": "test", "revision": "abc123"}
    records = load_splits(_recipe(make_recipe, [source]).data).train
    assert calls == [("someorg/alpaca-like", "en", {"split": "test", "revision": "abc123"})]
    assert _answers(records) == ["Answer 0.", "Answer 1."]
    assert records[0]["location"] == "someorg/alpaca-like/en[test]:0"


def test_uncached_hub_data_set_offline_fails_fast(make_recipe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    recipe = _recipe(make_recipe, "someorg/surely-not-cached-dataset")
    started = time.perf_counter()
    with pytest.raises(DataError) as error:
        load_splits(recipe.data)
    assert time.perf_counter() - started < 15
    assert str(error.value).startswith(
        "someorg/surely-not-cached-dataset: Hub data set not in the local cache"
    )
    assert "offline" in str(error.value)


def test_weighted_mixture_and_sample_counts(make_recipe: Any, tmp_path: Path) -> None:
    big = write_jsonl(tmp_path / "big.jsonl", [{"prompt": f"B{i}", "completion": "big"} for i in range(30)])
    small = write_jsonl(
        tmp_path / "small.jsonl", [{"prompt": f"S{i}", "completion": "small"} for i in range(5)]
    )
    mixed = load_splits(
        _recipe(make_recipe, [{"path": str(big), "weight": 1}, {"path": str(small), "weight": 2}]).data
    )
    answers = _answers(mixed.train)
    assert len(answers) == 35 and answers.count("small") == 23 and answers.count("big") == 12
    assert (
        len({r["messages"][0]["content"] for r in mixed.train if r["messages"][-1]["content"] == "small"})
        == 5
    )
    counted = load_splits(
        _recipe(make_recipe, [{"path": str(big), "max_examples": 4}, {"path": str(small)}]).data
    )
    assert _answers(counted.train) == ["big"] * 4 + ["small"] * 5


def test_eval_split_fraction_or_count_is_seeded(make_recipe: Any, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"P{i}", "completion": f"C{i}"} for i in range(40)])
    first = load_splits(_recipe(make_recipe, str(path), eval_size=0.25).data)
    again = load_splits(_recipe(make_recipe, str(path), eval_size=0.25).data)
    assert (len(first.train), len(first.eval)) == (30, 10)
    assert _answers(first.eval) == _answers(again.eval)
    assert not set(_answers(first.eval)) & set(_answers(first.train))
    other_seed = load_splits(_recipe(make_recipe, str(path), eval_size=0.25, seed=7).data)
    assert _answers(other_seed.eval) != _answers(first.eval)
    counted = load_splits(_recipe(make_recipe, str(path), eval_size=3).data)
    assert (len(counted.train), len(counted.eval)) == (37, 3)
