"""The real CLI on the packaged SmolLM2-135M: a 2-step dpo-small run writes pair metrics, and merge takes it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


def _pipeline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_dpo_small_two_steps_then_merge(tmp_path: Path) -> None:
    result = _pipeline(
        "finetune",
        "dpo-small",
        "train.max_steps=2",
        "train.batch_size=2",
        f"train.output_dir={tmp_path}",
        "eval.max_examples=8",
        "eval.generate_examples=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("dpo-small-")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    assert metrics["train"]["log_history"][0]["loss"] == pytest.approx(math.log(2), abs=1e-3)
    for side in ("base", "adapted"):
        assert metrics[side]["preference"]["pairs"] == 8
        assert 0 <= metrics[side]["preference"]["accuracy"] <= 1
    assert 0 <= metrics["comparison"]["preference"]["reward_accuracy"] <= 1
    assert (run_dir / "plots" / "margins.png").is_file()
    merged = _pipeline("merge", str(run_dir))
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert (run_dir / "merged" / "model.safetensors").is_file()
