"""The real CLI on the packaged SmolLM2-135M: reward-small as shipped (60 steps: 20 were too few for the score
head to move past its noise) trains a score head whose held-out margin (score of chosen - rejected) grows, and
`pipeline merge` writes a standalone reward model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_dpo_smollm2 import _pipeline


@pytest.mark.slow
def test_reward_small_ranks_held_out_pairs_better_and_merges(tmp_path: Path) -> None:
    result = _pipeline(
        "finetune",
        "reward-small",
        "train.logging_steps=10",
        f"train.output_dir={tmp_path}",
        "eval.max_examples=32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("reward-small-")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    base, adapted = metrics["base"]["reward_model"], metrics["adapted"]["reward_model"]
    assert base["pairs"] == adapted["pairs"] == 32
    assert adapted["margin"] > base["margin"] + 0.1, (base, adapted)
    assert adapted["accuracy"] >= base["accuracy"], (base, adapted)
    assert "reward model accuracy" in (run_dir / "report.md").read_text()
    merged = _pipeline("merge", str(run_dir))
    assert merged.returncode == 0, merged.stderr[-3000:]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(run_dir / "merged")
    assert config.architectures == ["LlamaForSequenceClassification"] and config.num_labels == 1
