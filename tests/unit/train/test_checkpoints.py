"""--resume paths: run folders, checkpoints inside them, checkpoints of other (plain transformers/TRL) runs,
and folders that are neither."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import RecipeError, TrainingError
from pipeline.train.checkpoints import check_resumable, checkpoint_problem
from pipeline.train.resume import recipe_for_finetune, resume_source


def _checkpoint(folder: Path, step: int, weights: str = "adapter_model.safetensors") -> Path:
    folder.mkdir(parents=True)
    for name in (weights, "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_a_path_is_a_run_a_checkpoint_in_a_run_or_a_foreign_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny-20260101-000000"
    inside = _checkpoint(run / "checkpoints" / "checkpoint-4", 4)
    (run / "manifest.json").write_text("{}")
    foreign = _checkpoint(tmp_path / "trl-out" / "checkpoint-6", 6)
    assert resume_source(str(run)) == (run, None)
    assert resume_source(str(inside)) == (run.resolve(), inside)
    assert resume_source(str(foreign)) == (None, foreign)


def test_a_folder_that_is_no_checkpoint_says_what_one_holds(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as error:
        resume_source(str(tmp_path))
    message = str(error.value)
    assert "nor a checkpoint folder (no trainer_state.json)" in message and "\n" not in message
    assert all(
        name in message for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors")
    )


def test_a_checkpoint_of_another_name_counts_at_its_recorded_step(tmp_path: Path) -> None:
    renamed = _checkpoint(tmp_path / "my-best-state", 12)
    assert checkpoint_problem(renamed) is None
    assert check_resumable(renamed, "lora", -1) == 12
    assert check_resumable(renamed, "lora", 20) == 12


@pytest.mark.parametrize(
    ("weights", "method", "max_steps", "fragment"),
    [
        ("model.safetensors", "lora", -1, "holds full model weights but the recipe has adapter.method: lora"),
        (
            "adapter_model.safetensors",
            "full",
            -1,
            "holds a LoRA adapter but the recipe has adapter.method: full",
        ),
        ("adapter_model.safetensors", "lora", 5, "already at step 5 >= train.max_steps=5"),
    ],
)
def test_a_checkpoint_the_recipe_cannot_continue_is_refused(
    tmp_path: Path, weights: str, method: str, max_steps: int, fragment: str
) -> None:
    folder = _checkpoint(tmp_path / "checkpoint-5", 5, weights)
    with pytest.raises(TrainingError, match=fragment):
        check_resumable(folder, method, max_steps)


def test_an_incomplete_foreign_checkpoint_fails_before_any_weight_loads(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path / "checkpoint-2", 2)
    (folder / "optimizer.pt").unlink()
    with pytest.raises(
        TrainingError, match=r"cannot resume from this checkpoint: missing or empty: optimizer\.pt"
    ):
        recipe_for_finetune("lora-small", [], str(folder), None)
    with pytest.raises(RecipeError, match="name the recipe that continues it"):
        recipe_for_finetune(None, [], str(folder), None)


# What peft saves for target_modules: all-linear on the tiny 2-layer Llama (full names, in no order).
TINY_ALL_LINEAR = [
    f"model.layers.{layer}.{block}.{name}"
    for layer in (1, 0)
    for block, names in (
        ("mlp", ("up_proj", "gate_proj", "down_proj")),
        ("self_attn", ("v_proj", "q_proj", "k_proj", "o_proj")),
    )
    for name in names
]


def _lora_checkpoint(folder: Path, r: int, targets: list[str], use_dora: bool = False) -> Path:
    _checkpoint(folder, 4)
    settings = {
        "peft_type": "LORA",
        "r": r,
        "target_modules": targets,
        "use_dora": use_dora,
        "rank_pattern": {},
    }
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return folder


def test_another_adapter_shape_stops_in_one_line_before_any_weight_loads(
    make_recipe: Any, tmp_path: Path
) -> None:
    folder = _lora_checkpoint(tmp_path / "trl-out" / "checkpoint-4", 8, ["q_proj", "v_proj"])
    with pytest.raises(TrainingError) as error:  # the weights are b"x": loading any would fail otherwise
        recipe_for_finetune(str(make_recipe()), ["adapter.r=16", "train.max_steps=10"], str(folder), None)
    assert str(error.value) == (
        f"{folder}: holds a LoRA adapter of rank 8 on q_proj,v_proj; the recipe asks rank 16 on all-linear; "
        "resume with adapter.r: 8, adapter.target_modules: [q_proj, v_proj] (the settings it was trained "
        "with) or start a new run."
    )


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        ([], None),  # the recipe's all-linear, resolved from config.json, is what peft saved
        (["adapter.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"], None),
        (
            ["adapter.target_modules=[q_proj,v_proj]"],
            "adapter.target_modules: [down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj]",
        ),
        (["adapter.use_dora=true"], "adapter.use_dora: false"),
        (["model.adapter=elsewhere", "adapter.r=8"], None),  # a parent adapter sets the shape, not adapter.*
        (["adapter.method=full"], None),  # check_resumable refuses that one
    ],
)
def test_the_adapter_shape_is_compared_by_module_kind(
    make_recipe: Any, tmp_path: Path, overrides: list[str], fix: str | None
) -> None:
    from pipeline.config.loader import load_recipe
    from pipeline.train.checkpoints import check_adapter_shape

    recipe = load_recipe(str(make_recipe()), overrides)
    folder = _lora_checkpoint(tmp_path / "checkpoint-4", 4, TINY_ALL_LINEAR)
    if fix is None:
        check_adapter_shape(folder, recipe)
        return
    with pytest.raises(
        TrainingError, match=r"holds a LoRA adapter of rank 4 on down_proj,gate_proj,"
    ) as error:
        check_adapter_shape(folder, recipe)
    assert f"; resume with {fix} (the settings" in str(error.value)
