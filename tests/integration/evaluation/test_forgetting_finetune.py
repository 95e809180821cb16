"""The forgetting gate through the real CLI: training the tiny model's head hard on one small data set makes
it forget general text, `pipeline finetune` with eval.gate.forgetting exits non-zero in one line, and the run
folder holds the benchmarks, deltas and the passages that got most worse. `pipeline eval --benchmarks` with a
task whose data is not on this machine stops before loading any weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import EvaluationGateError
from tests.conftest import run_cli


def test_forgetting_gate_fails_a_run_that_forgot(make_recipe: Any, tmp_path: Path) -> None:
    recipe = make_recipe(
        adapter={"modules_to_save": ["lm_head"]},
        train={"learning_rate": 1.0, "max_steps": 4, "warmup_ratio": 0.0, "lr_scheduler": "constant"},
        eval={
            "general_text": True,
            "general_text_examples": 8,
            "benchmarks": ["offline_bbh_mc"],
            "benchmark_limit": 4,
            "gate": {"forgetting": True},
        },
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "finetune", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == EvaluationGateError.exit_code, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "general_perplexity" in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "general-text perplexity" in result.stderr  # the terminal table
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["gate"]["enabled"] is False and metrics["gate"]["forgetting"] == {
        "enabled": True,
        "passed": False,
    }
    base, adapted = metrics["base"], metrics["adapted"]
    assert adapted["general_text"]["perplexity"] > 2 * base["general_text"]["perplexity"]
    assert base["benchmarks"]["tasks"]["offline_bbh_mc"]["n"] == 4
    assert "per_example" not in adapted["general_text"]  # moved to comparison.forgetting
    deltas = metrics["comparison"]["deltas"]
    assert deltas["general_perplexity"] > 0 and "offline_bbh_mc.acc" in deltas
    worst = metrics["comparison"]["forgetting"]["general_text_most_worse"]
    assert worst and worst[0]["ratio"] >= worst[-1]["ratio"] > 1
    html = (run_dir / "report.html").read_text()
    assert "Forgetting: outside the training domain" in html and worst[0]["text"][:30] in html
    assert "offline_bbh_mc acc, adapted" in (run_dir / "README.md").read_text()  # the card's model-index


def test_eval_with_missing_benchmark_data_stops_before_loading(
    tiny_model_dir: Path,
    chat_files: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pipeline.models.artifacts as artifacts

    def no_load(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("weights loaded before the benchmark data check")

    monkeypatch.setattr(artifacts, "load_target", no_load)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["eval", str(tiny_model_dir), "--data", str(chat_files[1]), "--benchmarks", "arc_easy"]
    code, err = run_cli([*argv, "--output", str(tmp_path / "out")], monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "arc_easy" in lines[0] and "lm_eval --tasks arc_easy" in lines[0]
    assert not (tmp_path / "out").exists()
