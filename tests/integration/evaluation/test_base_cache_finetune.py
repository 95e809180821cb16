"""Base metrics across finetunes through pipeline.cli.app.main on the tiny model: the second run of the same
base on the same eval set reuses them (and says so), and eval.base: false leaves them out of the report,
the gate and the model card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

import pipeline.evaluation.base_cache as base_cache


def _run(
    recipe: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root: Path
) -> tuple:
    before = set(root.iterdir()) if root.is_dir() else set()
    code, err = run_cli(["finetune", str(recipe)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    (run_dir,) = set(root.iterdir()) - before
    return run_dir, " ".join(err.split()), json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def base_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts base evaluations (the adapted model's evaluation is not counted)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    made: list[int] = []
    real = base_cache.evaluate_model

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(base_cache, "evaluate_model", counting)
    return made


def test_the_second_finetune_reuses_the_base_metrics_and_says_so(
    make_recipe: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    base_calls: list[int],
) -> None:
    runs = tmp_path / "runs"
    recipe = make_recipe(train={"max_steps": 2})
    _, err, metrics_1 = _run(recipe, monkeypatch, capsys, runs)
    assert len(base_calls) == 1 and "reused from cache" not in err
    assert metrics_1["base_cache"]["reused"] is False

    # Another learning rate trains differently but leaves the base metrics as they were: reused.
    recipe = make_recipe(train={"max_steps": 2, "learning_rate": 0.02})
    second, err, metrics_2 = _run(recipe, monkeypatch, capsys, runs)
    cache = metrics_2["base_cache"]
    assert len(base_calls) == 1, "the base was evaluated again"
    assert cache["reused"] is True and cache["key"] == metrics_1["base_cache"]["key"]
    assert f"base metrics reused from cache {cache['key']} (computed {cache['computed']})" in err
    assert metrics_2["base"] == metrics_1["base"]
    assert metrics_2["comparison"]["deltas"]["perplexity"] is not None and metrics_2["gate"]["checks"]
    report = " ".join((second / "report.md").read_text().split())
    assert f"Base metrics reused from cache {cache['key']} (computed {cache['computed']})" in report
    assert "base eval: perplexity (earlier run, reused from cache)" in report


def test_eval_base_false_gives_adapted_only_metrics_report_and_card(
    make_recipe: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    base_calls: list[int],
) -> None:
    recipe = make_recipe(train={"max_steps": 2}, eval={"base": False})
    third, err, metrics_3 = _run(recipe, monkeypatch, capsys, tmp_path / "runs")
    assert not base_calls and "Evaluating the base model" not in err
    assert "base" not in metrics_3 and "gate" not in metrics_3 and "comparison" not in metrics_3
    assert metrics_3["adapted"]["perplexity"] > 1
    assert "adapted (held-out eval split)" in err and "The base model was not evaluated" in err
    report = (third / "report.md").read_text()
    assert "## Adapted model" in report and "## Base vs adapted" not in report
    assert "| metric | adapted | better |" in report and "## Regression gate" not in report
    examples = [json.loads(line) for line in (third / "eval_examples.jsonl").read_text().splitlines()]
    assert examples and all("adapted_perplexity" in e for e in examples)
    assert not any(key.startswith("base_") for e in examples for key in e)
    card = (third / "README.md").read_text()
    assert "## Evaluation (held-out split, adapted only: the base was not evaluated)" in card
    assert "| metric | adapted |" in card and "base model" not in card.split("---")[1]  # no base model-index
