"""train.stage: distill on the tiny model: trl's DistillationTrainer with a LoRA student and a frozen teacher
(a tiny model of the same tokenizer saved in the test, or an SFT run made in the test), the teacher-student
divergence in the evaluation, and the teacher found as the newest run of a recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_tiny_model

from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.workflow import finetune


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, tiny_tokenizer: Any) -> Path:
    """Another tiny model of the student's tokenizer (other random weights): a teacher whose distribution
    the student's differs from."""
    folder = tmp_path_factory.mktemp("teacher")
    build_tiny_model(len(tiny_tokenizer), seed=7).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def _recipe(make_recipe: Any, teacher: str, name: str = "distill", **train: Any) -> Path:
    return make_recipe(
        name=name,
        train={"stage": "distill", "batch_size": 4, "max_steps": 6, "learning_rate": 2e-2, **train},
        distill={"teacher": teacher, "max_completion_length": 8, "beta": 0.5},
    )


def test_trains_lora_only_against_a_frozen_teacher(
    make_recipe: Any, teacher_dir: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(str(_recipe(make_recipe, str(teacher_dir), max_steps=3)))
    inputs = prepare_inputs(recipe)
    assert inputs.train.column_names[-2:] == ["prompt", "prompt_tokens"]
    assert inputs.train[0]["prompt"][-1]["role"] == "user"  # the turns before the answer
    model = load_model(recipe)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = train_model(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train)
    history = [row for row in trained.metrics["log_history"] if "loss" in row]
    assert history and all(math.isfinite(row["loss"]) and row["loss"] >= 0 for row in history)
    assert all("completions/mean_length" in row for row in history)  # on-policy: the student sampled
    state = trained.trainer.model.state_dict()
    assert any(state[k].abs().sum() > 0 for k in state if "lora_B" in k), "LoRA never trained"
    for key, original in before.items():
        match = next(
            k for k in state if k.endswith(key.replace(".weight", ".base_layer.weight")) or k.endswith(key)
        )
        assert torch.equal(state[match], original), f"base weight {key} changed"
    teacher = trained.trainer.teacher_model
    assert not any(p.requires_grad for p in teacher.parameters())
    saved = build_tiny_model(len(inputs.tokenizer), seed=7).state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items()), "the teacher changed"


def test_run_reports_the_teacher_divergence_falling(make_recipe: Any, teacher_dir: Path) -> None:
    run = finetune(load_recipe(str(_recipe(make_recipe, str(teacher_dir), save_steps=3))))
    assert (run.run_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    base, adapted = metrics["base"]["distillation"], metrics["adapted"]["distillation"]
    assert base["tokens"] == adapted["tokens"] > 0 and base["examples"] == adapted["examples"] == 4
    assert 0 < adapted["kl"] < base["kl"], (base, adapted)
    assert metrics["comparison"]["deltas"]["teacher_kl"] == pytest.approx(adapted["kl"] - base["kl"])
    assert metrics["adapted"]["perplexity"] > 0  # the language metrics every run gets
    card = (run.run_dir / "README.md").read_text()
    assert f"distilled from `{teacher_dir}`" in card and "KL(teacher || student)" in card
    events = [json.loads(line) for line in (run.run_dir / "events.jsonl").read_text().splitlines()]
    evaluated = [e["metrics"]["teacher_kl"] for e in events if e["kind"] == "evaluation"]
    assert evaluated == [base["kl"], adapted["kl"]]


def test_the_teacher_is_a_recipes_newest_run_with_its_adapter_folded_in(make_recipe: Any) -> None:
    from pipeline.models.artifacts import load_target
    from pipeline.train.teacher import load_teacher, resolve_teacher

    sft = finetune(load_recipe(str(make_recipe(name="sft-teacher", train={"max_steps": 2}))))
    recipe = load_recipe(str(_recipe(make_recipe, "latest:sft-teacher")))
    teacher = resolve_teacher(recipe)
    assert Path(teacher.target) == sft.run_dir and teacher.ref.kind == "run"
    folded = load_teacher(recipe, teacher)
    assert not hasattr(folded, "peft_config") and not any(p.requires_grad for p in folded.parameters())
    with_adapter = load_target(str(sft.run_dir)).model
    ids = torch.tensor([[5, 9, 11, 40, 7]])
    with torch.inference_mode():
        torch.testing.assert_close(folded(ids).logits, with_adapter(ids).logits, rtol=1e-4, atol=1e-4)
