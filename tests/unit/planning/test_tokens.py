"""Token counts: the recipe tokenizer's numbers match a direct tokenization, tiktoken counts are exact
and offline, the estimate's arithmetic holds, and a measured throughput comes from real trainer steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS

from pipeline.config.loader import load_recipe
from pipeline.data.formatting import render
from pipeline.data.splits import load_splits
from pipeline.models.loading import load_tokenizer
from pipeline.planning import api_tokens
from pipeline.planning.tokens import (
    api_counts,
    distribution,
    estimate,
    measure_throughput,
    model_counts,
    run_tokens,
)


def test_distribution_nearest_rank() -> None:
    stats = distribution(list(range(1, 101)))
    assert stats == {"min": 1, "mean": 50.5, "p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    assert distribution([7]) == {"min": 7, "mean": 7, "p50": 7, "p90": 7, "p95": 7, "p99": 7, "max": 7}


def test_model_counts_match_the_rendered_conversations(make_recipe: Any, tiny_tokenizer: Any) -> None:
    recipe = load_recipe(str(make_recipe(train={"max_length": 40})))
    records = [{"messages": m, "prompt_turns": 0} for m in CONVERSATIONS]
    counts = model_counts(records, tiny_tokenizer, recipe.train)
    expected = [
        len(tiny_tokenizer(render(tiny_tokenizer, m), add_special_tokens=False)["input_ids"])
        for m in CONVERSATIONS
    ]
    assert counts["per_example"] == expected
    assert counts["above_max_length"] == sum(n > 40 for n in expected) > 0
    assert counts["share_above_max_length"] == round(counts["above_max_length"] / len(expected), 4)
    assert counts["tokens_per_epoch"] == sum(min(n, 40) for n in expected)
    assert counts["tokens_cut_by_truncation"] == sum(expected) - counts["tokens_per_epoch"]
    assert 0 < counts["trained_tokens_per_epoch"] < counts["tokens_per_epoch"]


def test_tiktoken_counts_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    cl100k = api_tokens.get_encoding("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]  # tiktoken's documented ids
    assert api_tokens.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    record = {"messages": CONVERSATIONS[0]}
    content = sum(len(cl100k.encode(m["content"])) for m in CONVERSATIONS[0])
    assert api_tokens.count_record(cl100k, record) == content + 3 * 2 + 3
    counts = api_counts([record, {"text": "hello world"}])
    assert counts["cl100k_base"]["per_example"] == [content + 9, 2]
    assert counts["o200k_base"]["total"] > 0


def test_tiktoken_unavailable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))

    def missing(stem: str) -> bytes:
        raise ModuleNotFoundError("No module named 'quicktok'")

    monkeypatch.setattr(api_tokens, "_rebuild", missing)
    counts = api_counts([{"text": "hello"}])
    for name in ("cl100k_base", "o200k_base"):
        reason = counts[name]["unavailable"]
        assert "\n" not in reason and "quicktok-v1" in reason and name in reason


def test_run_tokens_for_steps_and_epochs(make_recipe: Any) -> None:
    counts = {"examples": 100, "tokens_per_epoch": 5000}
    by_steps = load_recipe(str(make_recipe(train={"max_steps": 10, "batch_size": 4, "grad_accum": 2})))
    assert run_tokens(by_steps.train, counts) == {
        "steps": 10,
        "examples_per_step": 8,
        "tokens": 4000,
        "epochs": 0.8,
    }
    by_epochs = load_recipe(str(make_recipe(train={"max_steps": -1, "epochs": 2, "batch_size": 8})))
    assert run_tokens(by_epochs.train, counts) == {
        "steps": 26,
        "examples_per_step": 8,
        "tokens": 10000,
        "epochs": 2.08,
    }
    result = estimate(by_steps.train, counts, {"tokens_per_second": 200.0, "source": "given"})
    assert result["seconds"] == 20.0 and result["source"] == "given"


def test_measured_throughput_from_trainer_steps(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe()))
    records = load_splits(recipe.data).train
    result = measure_throughput(recipe, records, steps=3)
    assert result["measured_steps"] == 2 and result["source"] == "measured"
    assert result["tokens_per_second"] > 0 and result["seconds_per_step"] > 0
    # A recipe's own run folder is untouched: the probe trains in a temporary folder.
    assert not Path(recipe.train.output_dir).exists()
    assert load_tokenizer(recipe.model).chat_template  # the recipe still loads as before
