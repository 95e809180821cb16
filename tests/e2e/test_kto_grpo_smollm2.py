"""The real CLI on the packaged SmolLM2-135M: 2-step kto-small, grpo-small and rloo-small runs write their metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _finetune(recipe: str, tmp_path: Path, *overrides: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "finetune",
        recipe,
        "train.max_steps=2",
        f"train.output_dir={tmp_path}",
    ]
    result = subprocess.run([*command, *overrides], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith(f"{recipe}-")]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_kto_small_two_steps(tmp_path: Path) -> None:
    metrics = _finetune("kto-small", tmp_path, "eval.max_examples=8", "eval.generate_examples=0")
    assert metrics["train"]["steps"] == 2
    assert metrics["train"]["log_history"][0]["loss"] == pytest.approx(0.5, abs=1e-3)  # policy = reference
    for side in ("base", "adapted"):
        assert metrics[side]["labelled"]["records"] == 8


@pytest.mark.slow
def test_grpo_small_two_steps(tmp_path: Path) -> None:
    metrics = _finetune("grpo-small", tmp_path, "eval.max_examples=4", "eval.generate_examples=4")
    assert metrics["train"]["steps"] == 2
    logged = {key for entry in metrics["train"]["log_history"] for key in entry}
    assert {"rewards/exact_match/mean", "rewards/similarity/mean", "rewards/regex/mean"} <= logged
    for side in ("base", "adapted"):
        assert metrics[side]["reward"]["n"] == 4 and -0.5 <= metrics[side]["reward"]["mean"] <= 1.75


@pytest.mark.slow
def test_rloo_small_two_steps(tmp_path: Path) -> None:
    metrics = _finetune(
        "rloo-small", tmp_path, "eval.max_examples=4", "eval.generate_examples=4", "train.logging_steps=1"
    )
    assert metrics["train"]["steps"] == 2
    steps = [entry for entry in metrics["train"]["log_history"] if "loss" in entry]
    assert len(steps) == 2
    for entry in steps:
        assert {"rewards/exact_match/mean", "rewards/similarity/mean", "frac_reward_zero_std"} <= set(entry)
    for side in ("base", "adapted"):
        assert metrics[side]["reward"]["n"] == 4 and -0.5 <= metrics[side]["reward"]["mean"] <= 1.75
