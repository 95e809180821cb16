"""The base-metrics cache: a second evaluation of the same base on the same eval set is read back, anything
that changes the metrics misses, settings that only judge them hit, and a damaged entry is recomputed."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS

import pipeline.evaluation.base_cache as base_cache
from pipeline.config.loader import load_recipe
from pipeline.config.schema import Recipe
from pipeline.evaluation.runner import prepare_eval

RECORDS = [{"messages": m} for m in CONVERSATIONS]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts evaluate_model calls made by the cache (each one a real evaluation of the tiny model)."""
    made: list[int] = []
    real = base_cache.evaluate_model

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(base_cache, "evaluate_model", counting)
    return made


@pytest.fixture
def evaluate(
    make_recipe: Callable[..., Path], tiny_model: Any, tiny_tokenizer: Any
) -> Callable[..., dict[str, Any]]:
    """Evaluate the tiny base through the cache under a recipe with the given overrides and eval records."""

    def run(*overrides: str, records: list[dict[str, Any]] = RECORDS, weights: str = "w1") -> dict[str, Any]:
        recipe: Recipe = load_recipe(str(make_recipe()), list(overrides))
        data = prepare_eval(
            records, tiny_tokenizer, recipe.eval, recipe.train.max_length, recipe.train.loss_on
        )
        return base_cache.evaluate_base(tiny_model, tiny_tokenizer, recipe, data, weights)

    return run


def test_the_second_evaluation_is_read_back(
    evaluate: Callable[..., dict[str, Any]],
    calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PIPELINE_BASE_CACHE", str(tmp_path / "cache"))
    records = [
        *RECORDS,
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]},
    ]
    first = evaluate("eval.generate_examples=2", records=records)
    assert len(calls) == 1 and first["base_cache"]["reused"] is False
    key = first["base_cache"]["key"]
    assert (tmp_path / "cache" / f"{key}.json").is_file()
    capsys.readouterr()

    second = evaluate("eval.generate_examples=2", records=records)
    assert len(calls) == 1, "the base was evaluated again"
    assert second["base_cache"] == {"key": key, "computed": first["base_cache"]["computed"], "reused": True}
    assert f"base metrics reused from cache {key} (computed {first['base_cache']['computed']})" in " ".join(
        capsys.readouterr().err.split()
    )
    # The same numbers, answers and per-example values, NaN (an example without scored tokens) included.
    assert second["base"]["perplexity"] == first["base"]["perplexity"] > 1
    assert second["base"]["per_example"]["answer"] == first["base"]["per_example"]["answer"]
    assert len(second["base"]["per_example"]["answer"]) == 2
    got, want = second["base"]["per_example"]["perplexity"], first["base"]["per_example"]["perplexity"]
    assert [g if math.isfinite(g) else "nan" for g in got] == [w if math.isfinite(w) else "nan" for w in want]


@pytest.mark.parametrize(
    ("overrides", "records", "weights", "hit"),
    [
        ((), RECORDS, "w1", True),
        (("eval.perplexity_tolerance=0.5", "eval.samples=1", "eval.fail_if_worse=true"), RECORDS, "w1", True),
        ((), RECORDS[:3], "w1", False),  # an eval record fewer
        ((), [RECORDS[1], RECORDS[0], *RECORDS[2:]], "w1", False),  # the same records in another order
        (("eval.max_new_tokens=4",), RECORDS, "w1", False),
        (("eval.batch_size=1",), RECORDS, "w1", False),
        (("eval.max_examples=2",), RECORDS, "w1", False),
        (("train.loss_on=all",), RECORDS, "w1", False),
        (("train.max_length=16",), RECORDS, "w1", False),  # the sliding window follows it
        (("data.system_prompt=Be brief.",), RECORDS, "w1", False),
        (("model.attn_implementation=eager",), RECORDS, "w1", False),
        ((), RECORDS, "w2", False),  # other base weights
    ],
)
def test_what_changes_the_metrics_misses_and_what_judges_them_hits(
    evaluate: Callable[..., dict[str, Any]],
    calls: list[int],
    overrides: tuple[str, ...],
    records: list[dict[str, Any]],
    weights: str,
    hit: bool,
) -> None:
    first = evaluate()
    second = evaluate(*overrides, records=records, weights=weights)
    assert len(calls) == (1 if hit else 2)
    assert (second["base_cache"]["key"] == first["base_cache"]["key"]) is hit


def test_a_changed_chat_template_misses(
    evaluate: Callable[..., dict[str, Any]], calls: list[int], tiny_tokenizer: Any
) -> None:
    evaluate()
    template = tiny_tokenizer.chat_template
    try:
        tiny_tokenizer.chat_template = template + "{# revised #}"  # renders the same text, yet it is another
        evaluate()
    finally:
        tiny_tokenizer.chat_template = template
    assert len(calls) == 2


def test_a_damaged_entry_is_recomputed_and_rewritten(
    evaluate: Callable[..., dict[str, Any]],
    calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PIPELINE_BASE_CACHE", str(tmp_path))
    key = evaluate()["base_cache"]["key"]
    entry = tmp_path / f"{key}.json"
    for damage in ('{"key": "', json.dumps({"key": "other", "computed": "x", "metrics": {"perplexity": 1}})):
        entry.write_text(damage)
        with caplog.at_level(logging.WARNING):
            result = evaluate()
        assert result["base_cache"]["reused"] is False and result["base"]["perplexity"] > 1
        assert any(str(entry) in r.getMessage() for r in caplog.records)
        assert json.loads(entry.read_text())["key"] == key  # rewritten whole
    assert len(calls) == 3
    assert evaluate()["base_cache"]["reused"] is True and len(calls) == 3


def test_the_cache_can_be_turned_off_and_an_unwritable_one_only_warns(
    evaluate: Callable[..., dict[str, Any]],
    calls: list[int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PIPELINE_BASE_CACHE", "0")
    assert "base_cache" not in evaluate() and "base_cache" not in evaluate()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PIPELINE_BASE_CACHE", str(blocker / "cache"))  # cannot be created under a file
    assert evaluate()["base_cache"]["reused"] is False
    assert len(calls) == 3


def test_the_default_folder_follows_the_pipeline_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PIPELINE_BASE_CACHE")
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    assert base_cache.cache_folder() == tmp_path / "base-metrics"


def test_without_a_manifest_hash_the_weight_files_are_fingerprinted_by_name_size_and_time(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import os
    import shutil

    from pipeline.config.schema import ModelSpec

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    spec = ModelSpec(name=str(folder))
    before = base_cache.weight_files_fingerprint(spec)
    assert base_cache.weight_files_fingerprint(spec) == before  # stable, and no file is read
    (folder / "tokenizer_config.json").write_text("{}")  # not a weight file
    assert base_cache.weight_files_fingerprint(spec) == before
    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # rewritten a second later
    assert base_cache.weight_files_fingerprint(spec) != before
