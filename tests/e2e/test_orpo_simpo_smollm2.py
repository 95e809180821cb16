"""The real CLI on the packaged SmolLM2-135M: 2-step orpo-small and simpo-small runs (trl.experimental's
trainers, no reference model) train and write held-out pair metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_dpo_smollm2 import _pipeline


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["orpo-small", "simpo-small"])
def test_two_steps_write_pair_metrics(recipe: str, tmp_path: Path) -> None:
    result = _pipeline(
        "finetune",
        recipe,
        "train.max_steps=2",
        "train.batch_size=2",
        "train.logging_steps=1",
        f"train.output_dir={tmp_path}",
        "eval.max_examples=8",
        "eval.generate_examples=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith(f"{recipe}-")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    losses = [row["loss"] for row in metrics["train"]["log_history"] if "loss" in row]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    for side in ("base", "adapted"):
        assert metrics[side]["preference"]["pairs"] == 8
        assert 0 <= metrics[side]["preference"]["accuracy"] <= 1
    assert 0 <= metrics["comparison"]["preference"]["reward_accuracy"] <= 1
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
