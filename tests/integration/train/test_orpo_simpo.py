"""train.stage: orpo and simpo on the tiny model: trl's experimental ORPO and CPO (SimPO loss) trainers with
LoRA, on the pair records DPO reads, without a reference model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_dpo import PAIRS, _dpo_recipe

from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.train.patches.registry import active_patches
from pipeline.workflow import finetune

SECTIONS = {"orpo": {"beta": 0.5}, "simpo": {"beta": 2.5, "simpo_gamma": 0.3}}


def _recipe(make_recipe: Any, tmp_path: Path, name: str) -> Path:
    return _dpo_recipe(make_recipe, tmp_path, name=name, train={"stage": name}, **{name: SECTIONS[name]})


@pytest.mark.parametrize("name", list(SECTIONS))
def test_trains_lora_only_and_logs_its_loss(name: str, make_recipe: Any, tmp_path: Path) -> None:
    recipe = load_recipe(str(_recipe(make_recipe, tmp_path, name)))
    inputs = prepare_inputs(recipe)
    model = load_model(recipe)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = train_model(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train)
    history = [row for row in trained.metrics["log_history"] if "loss" in row]
    assert history and all(math.isfinite(row["loss"]) for row in history)
    first, beta = history[0], SECTIONS[name]["beta"]
    if name == "orpo":  # ORPO: the chosen answers' NLL minus λ x the mean log-sigmoid of the log odds ratio
        assert first["loss"] == pytest.approx(first["nll_loss"] - beta * first["log_odds_ratio"], rel=1e-3)
    else:  # SimPO: rewards are beta x the per-token (length-normalised) log-probabilities, no NLL term
        assert first["rewards/chosen"] == pytest.approx(beta * first["logps/chosen"], rel=1e-3)
        assert first["logps/chosen"] > -30, "log-probabilities are summed, not per token"
    state = trained.trainer.model.state_dict()
    assert any(state[k].abs().sum() > 0 for k in state if "lora_B" in k), "LoRA never trained"
    for key, original in before.items():
        match = next(
            k for k in state if k.endswith(key.replace(".weight", ".base_layer.weight")) or k.endswith(key)
        )
        assert torch.equal(state[match], original), f"base weight {key} changed"
    # trl's experimental trainers compute full logits: the fused-head lever is off, not claimed.
    assert active_patches()["compact_lm_head"] == "off"


@pytest.mark.parametrize("name", list(SECTIONS))
def test_run_writes_held_out_pair_metrics(name: str, make_recipe: Any, tmp_path: Path) -> None:
    run = finetune(load_recipe(str(_recipe(make_recipe, tmp_path, name))))
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] > 0
    for side in ("base", "adapted"):
        assert metrics[side]["preference"]["pairs"] == len(PAIRS)
        assert 0 <= metrics[side]["preference"]["accuracy"] <= 1
    rewards = metrics["comparison"]["preference"]
    change = rewards["chosen_logp_change"] - rewards["rejected_logp_change"]
    assert rewards["reward_margin"] == pytest.approx(change, abs=1e-4)
    assert any(c["metric"] == "preference_accuracy" for c in metrics["gate"]["checks"])
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["recipe"][name] == {**manifest["recipe"][name], **SECTIONS[name]}
    assert not (run.run_dir / "adapter" / "ref").exists()
