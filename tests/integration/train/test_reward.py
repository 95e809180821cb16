"""train.stage: reward on the tiny model: trl's RewardTrainer with LoRA and a score head; the run's reward model
scoring GRPO's completions (grpo.rewards: [{model: RUN}]); the chain SFT -> reward model -> GRPO."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_jsonl
from test_dpo import PAIRS, _dpo_recipe
from test_grpo import PROMPTS

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.models.artifacts import load_target
from pipeline.models.heads import is_reward_model, score_rows
from pipeline.models.merge import merge_run
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.train.reward_model import ModelReward
from pipeline.workflow import finetune, prepare


def _reward_recipe(make_recipe: Any, tmp_path: Path, **sections: Any) -> Path:
    return _dpo_recipe(
        make_recipe,
        tmp_path,
        name="reward",
        train={"stage": "reward", "max_steps": 8, **sections.pop("train", {})},
        **sections,
    )


def _grpo_recipe(make_recipe: Any, tmp_path: Path, rewards: list[dict[str, Any]], **sections: Any) -> Path:
    train = write_jsonl(tmp_path / "prompts" / "train.jsonl", PROMPTS)
    held_out = write_jsonl(tmp_path / "prompts" / "eval.jsonl", PROMPTS[:3])
    return make_recipe(
        name="grpo",
        data={"train": str(train), "eval": str(held_out), "allow_contamination": True},
        train={"stage": "grpo", "batch_size": 4, "max_steps": 2},
        grpo={"num_generations": 2, "max_completion_length": 8, "rewards": rewards},
        eval={"generate_examples": 3},
        **sections,
    )


def test_trains_the_score_head_and_lora_only(make_recipe: Any, tmp_path: Path) -> None:
    recipe = load_recipe(str(_reward_recipe(make_recipe, tmp_path)))
    inputs = prepare_inputs(recipe)
    model = load_model(recipe)
    assert is_reward_model(model) and model.config.num_labels == 1
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = train_model(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train)
    logged = {key for row in trained.metrics["log_history"] for key in row}
    assert {"loss", "accuracy", "margin"} <= logged
    state = trained.trainer.model.state_dict()
    assert any(state[k].abs().sum() > 0 for k in state if "lora_B" in k), "LoRA never trained"
    head = next(v for k, v in state.items() if k.endswith("score.modules_to_save.default.weight"))
    assert not torch.equal(head, before["score.weight"]), "the score head never trained"
    for name, original in before.items():
        if name == "score.weight":
            continue
        key = next(
            k for k in state if k.endswith(name.replace(".weight", ".base_layer.weight")) or k.endswith(name)
        )
        assert torch.equal(state[key], original), f"base weight {name} changed"


def test_run_scores_held_out_pairs_reloads_and_merges(make_recipe: Any, tmp_path: Path) -> None:
    run = finetune(load_recipe(str(_reward_recipe(make_recipe, tmp_path, train={"max_steps": 16}))))
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    for side in ("base", "adapted"):
        scored = metrics[side]["reward_model"]
        assert scored["pairs"] == len(PAIRS) and 0 <= scored["accuracy"] <= 1
        assert "perplexity" not in metrics[side]  # a reward model has no language metrics
    # 16 steps on four repeated pairs: the trained head ranks every held-out (= seen) pair the right way.
    assert metrics["adapted"]["reward_model"]["accuracy"] == 1.0
    assert metrics["adapted"]["reward_model"]["margin"] > metrics["base"]["reward_model"]["margin"]
    checks = json.loads((run.run_dir / "checks.json").read_text())
    assert checks["reload"]["passed"] is True
    card = (run.run_dir / "README.md").read_text()
    assert "reward modelling" in card
    # Reloaded (adapter on a fresh base) and merged, the model gives the scores the run evaluated.
    loaded = load_target(str(run.run_dir))
    assert is_reward_model(loaded.model)
    rows = [[4, 5, 6, 7], [4, 9, 10, 11, 12]]
    pad = loaded.tokenizer.pad_token_id
    scores = score_rows(loaded.model, rows, 2, pad)
    merged = merge_run(str(run.run_dir), tmp_path / "merged", dtype="float32")
    reloaded = load_target(str(merged.output))
    assert type(reloaded.model).__name__.endswith("ForSequenceClassification")
    assert score_rows(reloaded.model, rows, 2, pad) == pytest.approx(scores, abs=1e-4)


def test_sft_then_reward_model_then_grpo_with_it(make_recipe: Any, tmp_path: Path) -> None:
    sft = finetune(load_recipe(str(make_recipe(name="sft", train={"max_steps": 2}))))
    reward = finetune(load_recipe(str(_reward_recipe(make_recipe, tmp_path))))
    rewards = [{"model": str(reward.run_dir)}, {"function": "length", "target_chars": 12, "weight": 0.5}]
    path = _grpo_recipe(make_recipe, tmp_path, rewards, model={"adapter": str(sft.run_dir)})
    grpo = finetune(load_recipe(str(path)))
    name = f"reward_model:{reward.run_dir.name}"
    logged = {key for row in grpo.metrics["train"]["log_history"] for key in row}
    assert f"rewards/{name}/mean" in logged
    manifest = json.loads((grpo.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["run"].endswith(sft.run_dir.name)
    # The greedy answers' reward is the reward model's score plus the weighted length reward.
    scorer = ModelReward(str(reward.run_dir))
    rows = [json.loads(line) for line in (grpo.run_dir / "eval_examples.jsonl").read_text().splitlines()]
    scored = [row for row in rows if "adapted_reward" in row]
    assert scored
    for row in scored:
        prompt = [{"role": "user", "content": row["prompt"]}]
        (model_score,) = scorer(prompts=[prompt], completions=[row["adapted_answer"]])
        length = max(0.0, 1 - abs(len(row["adapted_answer"]) - 12) / 12)
        assert row["adapted_reward"] == pytest.approx(model_score + 0.5 * length, abs=1e-4), prompt


def test_a_reward_model_that_is_not_one_fails_before_loading(make_recipe: Any, tmp_path: Path) -> None:
    missing = _grpo_recipe(make_recipe, tmp_path, [{"model": str(tmp_path / "runs" / "nothing")}])
    with pytest.raises(RecipeError, match=r"grpo\.rewards model .*nothing is not a folder"):
        prepare(load_recipe(str(missing)))
    sft = finetune(load_recipe(str(make_recipe(name="sft", train={"max_steps": 1}))))
    wrong = _grpo_recipe(make_recipe, tmp_path, [{"model": str(sft.run_dir)}])
    with pytest.raises(RecipeError, match=r"is not a reward model .*train\.stage: reward"):
        prepare(load_recipe(str(wrong)))


def test_a_reward_model_refuses_to_generate_or_export_in_one_line(make_recipe: Any, tmp_path: Path) -> None:
    from pipeline.errors import AssetError
    from pipeline.export.command import export_run
    from pipeline.inference.loading import load_for_inference

    run = finetune(load_recipe(str(_reward_recipe(make_recipe, tmp_path, train={"max_steps": 1}))))
    with pytest.raises(AssetError, match=r"a reward model scores answers and cannot generate text"):
        load_for_inference(str(run.run_dir))
    with pytest.raises(AssetError, match=r"cannot be exported for llama\.cpp or Ollama"):
        export_run(str(run.run_dir))
