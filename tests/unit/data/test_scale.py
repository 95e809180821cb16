"""Preparation at scale: chunked, multi-process encoding gives the rows one-by-one encoding gives, with bad
records stopped at file:line; the prepared-data cache serves an unchanged rerun and never a changed file."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import CHATML, CONVERSATIONS, build_tiny_tokenizer, write_jsonl

import pipeline.data.encode
from pipeline.config.loader import load_recipe
from pipeline.data.formatting import tokenize_conversation
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import DataError
from pipeline.train.inputs import prepare_inputs


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Chunks of 7 records and workers from 20 records on, so a few dozen records take the parallel path."""
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline.data.encode, "CHUNK", 7)
    monkeypatch.setattr(pipeline.data.encode, "PARALLEL_MIN", 20)


def _records(count: int) -> list[dict[str, Any]]:
    return [
        {"messages": CONVERSATIONS[i % len(CONVERSATIONS)], "prompt_turns": 0, "location": f"x.jsonl:{i + 1}"}
        for i in range(count)
    ]


def test_two_workers_give_the_one_by_one_rows(small_chunks: None, make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe()))
    tokenizer = build_tiny_tokenizer()
    records = _records(45)
    dataset = tokenize_records(records, tokenizer, recipe.train, num_proc=2)
    assert len(dataset) == 45 and dataset["location"] == [r["location"] for r in records]
    for row, record in zip(dataset, records, strict=True):
        alone = tokenize_conversation(tokenizer, record["messages"], recipe.train.max_length)
        assert row["input_ids"] == alone["input_ids"] and row["assistant_masks"] == alone["assistant_masks"]
        assert row["num_tokens"] == alone["num_tokens"] and row["num_trained"] == alone["num_trained"]
    assert not [
        p for p in (Path(dataset.cache_files[0]["filename"]).parents[2]).iterdir() if "shards-" in p.name
    ]


def test_a_record_the_template_cannot_render_stops_at_its_line(small_chunks: None, make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe()))
    records = _records(45)
    records[30] = {
        **records[30],
        "messages": [{"role": "user", "content": "BAD"}, *records[30]["messages"][1:]],
    }
    # A template that refuses one record's content (and renders every probe the recipe check tries).
    refusing = "{% for m in messages %}{% if m['content'] == 'BAD' %}{{ raise_exception('no') }}{% endif %}{% endfor %}"
    tokenizer = build_tiny_tokenizer(template=refusing + CHATML)
    with pytest.raises(DataError, match=r"^x\.jsonl:31: .*data\.on_invalid: skip"):
        tokenize_records(records, tokenizer, recipe.train, num_proc=2)
    skipped: dict[str, int] = {}
    kept = tokenize_records(records, tokenizer, recipe.train, "skip", skipped=skipped, num_proc=2)
    assert len(kept) == 44 and skipped == {"x.jsonl": 1}


def test_an_unchanged_rerun_is_served_from_the_prepared_cache(
    tmp_path: Path, make_recipe: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    recipe = load_recipe(str(make_recipe()))
    first = prepare_inputs(recipe)
    with caplog.at_level(logging.INFO, logger="pipeline.train.inputs"):
        second = prepare_inputs(recipe)
    assert "Reusing the prepared data" in caplog.text
    assert second.train["input_ids"] == first.train["input_ids"] and second.hygiene == first.hygiene
    assert second.splits.eval == first.splits.eval and len(second.splits.train) == len(first.splits.train)
    assert list(second.splits.train) == first.splits.train  # loaded again only when read
    train_file = Path(recipe.data.resolve_path(recipe.data.train[0].path))
    write_jsonl(train_file, [{"messages": m} for m in CONVERSATIONS * 3])  # same files, other content
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.train.inputs"):
        third = prepare_inputs(recipe)
    assert (
        "Reusing the prepared data" not in caplog.text and len(third.splits.train) == len(CONVERSATIONS) * 3
    )
