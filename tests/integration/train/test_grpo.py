"""train.stage: grpo on the tiny model: trl's GRPOTrainer with built-in and user rewards, LoRA, greedy rewards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_jsonl
from safetensors.torch import load_file

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.runs.rollouts import read_rollouts
from pipeline.workflow import finetune, prepare

PROMPTS = [{"prompt": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(4) for b in range(3)]
USER_REWARDS = "CALLS = []\n\n\ndef short(completions, answer, **kwargs):\n    CALLS.append(len(completions))\n    return [1.0 if len(str(c)) < 400 else 0.0 for c in completions]\n"


def _grpo_recipe(make_recipe: Any, tmp_path: Path, rewards: list[dict[str, Any]]) -> Path:
    train = write_jsonl(tmp_path / "prompts" / "train.jsonl", PROMPTS)
    held_out = write_jsonl(tmp_path / "prompts" / "eval.jsonl", PROMPTS[:3])
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS, encoding="utf-8")
    return make_recipe(
        name="grpo",
        data={"train": str(train), "eval": str(held_out), "allow_contamination": True},
        train={"stage": "grpo", "batch_size": 4, "max_steps": 2},
        grpo={"num_generations": 2, "max_completion_length": 8, "rewards": rewards},
        eval={"generate_examples": 3},
    )


def test_grpo_trains_on_varying_rewards_and_scores_greedy_answers(make_recipe: Any, tmp_path: Path) -> None:
    rewards = [
        {"function": "length", "target_chars": 12},  # varies with every sampled length: non-zero advantages
        {"function": "exact_match", "weight": 2.0},
        {"function": "regex", "pattern": r"\d", "weight": 0.5},
        {"function": "my_rewards.py:short", "weight": 0.1},
    ]
    run = finetune(load_recipe(str(_grpo_recipe(make_recipe, tmp_path, rewards))))
    history = run.metrics["train"]["log_history"]
    assert run.metrics["train"]["steps"] == 2
    logged = {key for entry in history for key in entry}
    assert {
        "rewards/length/mean",
        "rewards/exact_match/mean",
        "rewards/regex/mean",
        "rewards/short/mean",
    } <= logged
    rounds = read_rollouts(run.run_dir)  # every generation round, newest first, grouped by prompt
    assert rounds and sorted(r["step"] for r in rounds) == [r["step"] for r in rounds][::-1]
    for group in (g for r in rounds for g in r["groups"]):
        assert len(group["completions"]) == 2  # grpo.num_generations
        for completion in group["completions"]:
            values = completion["rewards"]
            assert list(values) == ["length", "exact_match", "regex", "short"]
            weighted = (
                values["length"] + 2.0 * values["exact_match"] + 0.5 * values["regex"] + 0.1 * values["short"]
            )
            assert completion["total"] == pytest.approx(weighted)
        totals = [c["total"] for c in group["completions"]]
        assert group["flat"] == (max(totals) - min(totals) < 1e-9)
    for row in scored_greedy_answers(run.run_dir, 3):  # the reward is the weighted sum of the four functions
        answer, reference = row["adapted_answer"], row["reference"]
        expected = max(0.0, 1 - abs(len(answer) - 12) / 12) + 2.0 * (
            answer.strip().rstrip(".").casefold() == reference
        )
        expected += 0.5 * any(ch.isdigit() for ch in answer) + 0.1 * (len(answer) < 400)
        assert row["adapted_reward"] == pytest.approx(expected)


def scored_greedy_answers(run_dir: Path, held_out: int) -> list[dict[str, Any]]:
    """The eval examples of a sampling-stage run (GRPO, RLOO), after checking that its LoRA weights moved and
    that the base's and the adapted model's greedy answers to every held-out prompt were scored."""
    weights = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert any(("lora_B" in k) and torch.count_nonzero(v) for k, v in weights.items()), "no LoRA update"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for side in ("base", "adapted"):
        assert metrics[side]["reward"]["n"] == held_out
    return [json.loads(line) for line in (run_dir / "eval_examples.jsonl").read_text().splitlines()]


def test_validate_imports_named_reward_files_only(make_recipe: Any, tmp_path: Path) -> None:
    recipe = load_recipe(str(_grpo_recipe(make_recipe, tmp_path, [{"function": "missing.py:score"}])))
    with pytest.raises(RecipeError, match=r"grpo\.rewards: missing\.py not found"):
        prepare(recipe)
    (tmp_path / "broken.py").write_text("def score(:\n", encoding="utf-8")
    broken = load_recipe(str(_grpo_recipe(make_recipe, tmp_path, [{"function": "broken.py:score"}])))
    with pytest.raises(RecipeError, match=r"importing .*broken\.py failed \(SyntaxError"):
        prepare(broken)


def test_grpo_trains_bf16_weights_under_autocast(make_recipe: Any, tmp_path: Path) -> None:
    """trl generates GRPO's completions outside autocast, so peft keeps casting adapter inputs there (bf16
    hidden states into fp32 LoRA weights would not multiply); the run records that lever as off."""
    path = _grpo_recipe(make_recipe, tmp_path, [{"function": "length", "target_chars": 12}])
    recipe = load_recipe(
        str(path), ["model.dtype=bfloat16", "train.precision=bf16", "train.max_steps=1", "eval.enabled=false"]
    )
    run = finetune(recipe)
    assert run.metrics["train"]["steps"] == 1
    levers = json.loads((run.run_dir / "manifest.json").read_text())["speed_levers"]
    assert levers["skip_peft_input_casts"] == "off: forwards outside autocast (generation)"


@pytest.mark.parametrize("merged", [True, False])
def test_rollouts_decode_through_the_merged_adapter_and_weights_come_back_exactly(
    merged: bool, make_recipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft.tuners.lora import LoraLayer
    from trl import GRPOTrainer

    from pipeline.train.inputs import load_model, prepare_inputs
    from pipeline.train.loop import train_model
    from pipeline.train.patches.registry import active_patches

    path = _grpo_recipe(make_recipe, tmp_path, [{"function": "length", "target_chars": 12}])
    recipe = load_recipe(str(path), [f"grpo.merged_rollouts={str(merged).lower()}", "train.max_steps=2"])
    seen: list[bool] = []
    original = GRPOTrainer._generate_single_turn

    def spy(
        self: Any, prompt_ids: Any, images: Any, multimodal_fields: Any, *args: Any, **kwargs: Any
    ) -> Any:
        # the patch's canary reads this signature: it must stay trl's
        layers = [m for m in self.model.modules() if isinstance(m, LoraLayer)]
        seen.append(bool(layers) and all(layer.merged for layer in layers))
        return original(self, prompt_ids, images, multimodal_fields, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_generate_single_turn", spy)
    inputs = prepare_inputs(recipe)
    model = load_model(recipe)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = train_model(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train)
    assert seen and all(flag is merged for flag in seen)
    assert active_patches()["merged_rollouts"] == ("on" if merged else "off: grpo.merged_rollouts is off")
    state = trained.trainer.model.state_dict()
    assert any(state[k].abs().sum() > 0 for k in state if "lora_B" in k), "LoRA never trained"
    for name, weight in before.items():
        key = next(
            k for k in state if k.endswith(name.replace(".weight", ".base_layer.weight")) or k.endswith(name)
        )
        assert torch.equal(state[key], weight), f"base weight {name} changed"
