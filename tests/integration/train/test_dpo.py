"""train.stage: dpo on the tiny model: trl's DPOTrainer with LoRA, the adapter-disabled base as reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_jsonl
from safetensors.torch import load_file

from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.workflow import finetune

PAIRS = [
    {
        "prompt": "What does json.dumps do?",
        "chosen": "It serializes an object to JSON.",
        "rejected": "It reads a file.",
    },
    {
        "prompt": "What does os.getcwd return?",
        "chosen": "The current directory.",
        "rejected": "The home directory.",
    },
    {
        "prompt": [{"role": "user", "content": "What does len do?"}],
        "chosen": [{"role": "assistant", "content": "It counts items."}],
        "rejected": [{"role": "assistant", "content": "It sorts items."}],
    },
    {
        "chosen": [
            {"role": "user", "content": "What does abs do?"},
            {"role": "assistant", "content": "It returns the absolute value."},
        ],
        "rejected": [
            {"role": "user", "content": "What does abs do?"},
            {"role": "assistant", "content": "It rounds a number."},
        ],
    },
]


def _dpo_recipe(make_recipe: Any, tmp_path: Path, name: str = "dpo", **sections: Any) -> Path:
    train = write_jsonl(tmp_path / "pairs" / "train.jsonl", PAIRS * 4)
    held_out = write_jsonl(tmp_path / "pairs" / "eval.jsonl", PAIRS)
    merged: dict[str, Any] = {
        "data": {"train": str(train), "eval": str(held_out), "allow_contamination": True},
        "train": {"stage": "dpo", "learning_rate": 5e-3, **sections.pop("train", {})},
        **sections,
    }
    return make_recipe(name=name, **merged)


def test_first_step_loss_is_ln2_and_only_lora_moves(make_recipe: Any, tmp_path: Path) -> None:
    recipe = load_recipe(str(_dpo_recipe(make_recipe, tmp_path)))
    inputs = prepare_inputs(recipe)
    model = load_model(recipe)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = train_model(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train)
    first = trained.metrics["log_history"][0]
    # A fresh LoRA adds zero (lora_B = 0): policy = reference, so -log sigmoid(0) = ln 2 exactly.
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    policy = trained.trainer.model
    state = policy.state_dict()
    assert any(state[k].abs().sum() > 0 for k in state if "lora_B" in k), "LoRA never trained"
    for name, original in before.items():
        key = next(
            k for k in state if k.endswith(name.replace(".weight", ".base_layer.weight")) or k.endswith(name)
        )
        assert torch.equal(state[key], original), f"base weight {name} changed"
    # The reference trl scores is the policy with its adapter disabled: exactly the untouched base.
    fresh = load_model(recipe).eval()
    ids = inputs.tokenizer("What does json.dumps do?", return_tensors="pt")["input_ids"]
    policy.eval()
    with torch.no_grad(), policy.disable_adapter():
        reference = policy(ids).logits
    with torch.no_grad():
        assert torch.equal(reference, fresh(ids).logits)
        assert not torch.allclose(policy(ids).logits, reference), "the adapter changed nothing"


def test_dpo_run_writes_pair_metrics_and_continues_an_sft_run(make_recipe: Any, tmp_path: Path) -> None:
    sft = finetune(load_recipe(str(make_recipe(name="sft", eval={"enabled": False}))))
    recipe = load_recipe(
        str(_dpo_recipe(make_recipe, tmp_path, model={"adapter": str(sft.run_dir)}, dpo={"beta": 0.2}))
    )
    run = finetune(recipe)
    history = run.metrics["train"]["log_history"]
    # The parent is both the start and the reference: the first step compares it with itself.
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    adapter = run.run_dir / "adapter"
    assert not (adapter / "ref").exists(), "trl's frozen reference copy was saved with the adapter"
    parent_weights = load_file(str(sft.run_dir / "adapter" / "adapter_model.safetensors"))
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert weights.keys() == parent_weights.keys()
    assert any(not torch.equal(weights[k], parent_weights[k]) for k in weights)
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    base, adapted = metrics["base"]["preference"], metrics["adapted"]["preference"]
    assert base["pairs"] == adapted["pairs"] == len(PAIRS)
    rewards = metrics["comparison"]["preference"]
    change = rewards["chosen_logp_change"] - rewards["rejected_logp_change"]
    assert rewards["reward_margin"] == pytest.approx(change, abs=1e-4)
    assert adapted["margin"] - base["margin"] == pytest.approx(change, abs=1e-3)
    assert any(c["metric"] == "preference_accuracy" for c in metrics["gate"]["checks"])
    assert (run.run_dir / "plots" / "margins.png").stat().st_size > 1000
    assert "preference accuracy (held-out pairs)" in (run.run_dir / "report.md").read_text()
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["run"] == str(sft.run_dir.resolve())
    assert manifest["recipe"]["dpo"]["beta"] == 0.2
