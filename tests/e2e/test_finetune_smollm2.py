"""The real CLI on the packaged SmolLM2-135M: a 2-step lora-small run writes a complete run folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_lora_small_two_steps(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "finetune",
        "lora-small",
        "train.max_steps=2",
        f"train.output_dir={tmp_path}",
        "eval.max_examples=8",
        "eval.generate_examples=2",
        "eval.max_new_tokens=16",
        "eval.benchmark_limit=8",  # lora-small's benchmarks and general text, kept short here
        "eval.general_text_examples=16",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("lora-small-")]
    for name in (
        "recipe.yaml",
        "metrics.json",
        "report.md",
        "README.md",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
    ):
        assert (run_dir / name).is_file(), f"missing {name}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for side in ("base", "adapted"):
        assert metrics[side]["perplexity"] > 1
        assert -1 <= metrics[side]["similarity"]["mean"] <= 1
    assert 5 < metrics["base"]["perplexity"] < 100, "packaged SmolLM2 should be a sensible model (ppl ~ 15)"
    assert metrics["train"]["steps"] == 2
    assert "base vs adapted" in result.stderr + result.stdout
    # the forgetting view: general English text and two shipped lm-eval tasks, base and adapted, with deltas
    assert 2 < metrics["base"]["general_text"]["perplexity"] < 200, "SmolLM2 reads English prose sensibly"
    for task in ("offline_mmlu", "offline_bbh_mc"):
        for side in ("base", "adapted"):
            assert metrics[side]["benchmarks"]["tasks"][task]["n"] == 8
            assert 0 <= metrics[side]["benchmarks"]["tasks"][task]["acc"] <= 1
        assert f"{task}.acc" in metrics["comparison"]["deltas"]
    assert "general_perplexity" in metrics["comparison"]["deltas"]
    assert "offline_mmlu: acc" in result.stderr + result.stdout  # the terminal table (its names wrap)
    assert "Forgetting" in (run_dir / "report.md").read_text()
    assert "offline_mmlu acc, base model" in (run_dir / "README.md").read_text()
