"""train.stage: distill before any weight loads: the distill section's checks, and the teacher found, in
safetensors and of the student's vocabulary (pipeline.train.teacher), each failure one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_model, build_tiny_tokenizer

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.train.preflight import check_settings


def _distill(make_recipe: Any, **section: Any) -> Path:
    section = {"max_completion_length": 8, **section}  # the tiny recipes' max_length is 64
    return make_recipe(name="distill", train={"stage": "distill"}, distill=section)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"beta": 0.5}, r"train\.stage distill needs distill\.teacher: .*latest:lora-small"),
        (
            {"teacher": "t", "beta": 1.5},
            r"distill\.beta: Input should be less than or equal to 1 \(got 1\.5\)",
        ),
        ({"teacher": "t", "temperature": 0}, r"distill\.temperature: Input should be greater than 0"),
        ({"teacher": "latest: "}, r"teacher 'latest: ' names nothing"),
        (
            {"teacher": "t", "max_completion_length": 60, "max_prompt_length": 8},
            r"distill\.max_completion_length \(60\) \+ max_prompt_length \(8\) leaves no room in "
            r"train\.max_length \(64\)",
        ),
        ({"teacher": "t", "max_completion_length": 64}, r"max_completion_length \(64\) leaves no room in"),
    ],
)
def test_the_distill_section_is_checked_when_the_recipe_loads(
    section: dict[str, Any], message: str, make_recipe: Any
) -> None:
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(str(_distill(make_recipe, **section)))
    assert "\n" not in str(info.value)


def test_a_distill_section_in_another_stage_is_an_error(make_recipe: Any) -> None:
    with pytest.raises(RecipeError, match=r"the distill section applies to train\.stage: distill"):
        load_recipe(str(make_recipe(distill={"teacher": "t"})))


def test_beta_bounds_are_trls() -> None:
    from trl import DistillationConfig

    for beta in (0.0, 1.0):
        assert DistillationConfig(output_dir="/tmp/unused", beta=beta, use_cpu=True).beta == beta
    with pytest.raises(ValueError, match=r"beta must be in \[0\.0, 1\.0\]"):
        DistillationConfig(output_dir="/tmp/unused", beta=1.01, use_cpu=True)


def _teacher_error(make_recipe: Any, teacher: str) -> str:
    recipe = load_recipe(str(_distill(make_recipe, teacher=teacher)))
    with pytest.raises(RecipeError) as info:
        check_settings(recipe)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_missing_teacher_fails_in_one_line_before_weights_load(make_recipe: Any, tmp_path: Path) -> None:
    message = _teacher_error(make_recipe, str(tmp_path / "nowhere"))
    assert "distill.teacher" in message and "nowhere: no such model folder" in message
    message = _teacher_error(make_recipe, "latest:ghost")
    assert "no finished ghost run in" in message and "`pipeline finetune ghost`" in message


def test_a_teacher_without_safetensors_is_refused(
    make_recipe: Any, tmp_path: Path, tiny_tokenizer: Any
) -> None:
    folder = tmp_path / "pickled"
    import torch

    model = build_tiny_model(len(tiny_tokenizer))
    model.config.save_pretrained(folder)  # transformers 5 writes safetensors only: a pickle made by hand
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    tiny_tokenizer.save_pretrained(folder)
    assert "holds no .safetensors weights" in _teacher_error(make_recipe, str(folder))


def test_a_teacher_of_another_vocabulary_is_refused(make_recipe: Any, tmp_path: Path) -> None:
    other = build_tiny_tokenizer(specials=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>", "<extra>"])
    folder = tmp_path / "other-vocab"
    build_tiny_model(len(other)).save_pretrained(folder)
    other.save_pretrained(folder)
    message = _teacher_error(make_recipe, str(folder))
    assert f"'{folder}' has another vocabulary" in message and "same tokenizer" in message


def test_a_teacher_of_the_same_tokenizer_passes_and_the_plan_counts_it(
    make_recipe: Any, tiny_model_dir: Path
) -> None:
    from pipeline.planning.memory import estimate, model_shape

    recipe = load_recipe(str(_distill(make_recipe, teacher=str(tiny_model_dir))))
    check_settings(recipe)
    shape = model_shape(recipe)
    rows = {name: size for name, size, _ in estimate(recipe, shape, device="cpu").rows}
    assert rows["teacher model"] == shape.params * 4  # float32, the student's dtype
    assert "reference model" not in rows
