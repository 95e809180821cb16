"""Recipes: every shipped recipe validates; bad keys and values fail as one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config.loader import RECIPES_DIR, list_recipe_files, load_recipe, parse_overrides
from pipeline.errors import RecipeError
from pipeline.train.crosscheck import check_against_libraries


def _recipe_ids() -> list[str]:
    return [str(p.relative_to(RECIPES_DIR)) for p in list_recipe_files()]


def test_recipes_folder_is_found_recursively() -> None:
    names = {p.stem for p in list_recipe_files()}
    assert "lora-small" in names
    assert all("accelerate" not in p.parts for p in list_recipe_files())


@pytest.mark.parametrize("relative", _recipe_ids())
def test_every_shipped_recipe_validates(relative: str) -> None:
    recipe = load_recipe(str(RECIPES_DIR / relative))
    check_against_libraries(recipe)  # trl's SFTConfig and peft's LoraConfig accept it too
    assert recipe.name == Path(relative).stem
    assert recipe.description, f"{relative} needs a one-line description"


def test_lora_small_defaults() -> None:
    recipe = load_recipe("lora-small")
    assert (recipe.adapter.r, recipe.adapter.alpha, recipe.adapter.target_modules) == (16, 32, "all-linear")
    assert recipe.train.loss_on == "assistant"
    assert Path(recipe.resolve_path(recipe.data.train[0].path)).is_file()


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_misspelled_section_suggests_the_right_one(tmp_path: Path) -> None:
    path = _write(tmp_path, {"adaptr": {"r": 8}, "data": {"train": "x.jsonl"}})
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    message = str(info.value)
    assert message.count("\n") == 0
    assert str(path) in message and "'adaptr'" in message and "did you mean 'adapter'" in message


def test_misspelled_nested_key_suggests_field(tmp_path: Path) -> None:
    path = _write(tmp_path, {"train": {"learnin_rate": 1e-4}, "data": {"train": "x.jsonl"}})
    with pytest.raises(RecipeError, match=r"train\.learnin_rate'; did you mean 'learning_rate'"):
        load_recipe(str(path))


def test_out_of_range_value_names_field_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, {"adapter": {"r": 0}, "data": {"train": "x.jsonl"}})
    with pytest.raises(RecipeError, match=r"adapter\.r: Input should be greater than 0 \(got 0\)"):
        load_recipe(str(path))


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, {"adapter": {"r": 0, "alpha": -1}, "data": {"train": "x.jsonl"}})
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    assert "adapter.r" in str(info.value) and "adapter.alpha" in str(info.value)


def test_missing_data_section_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"model": {"name": "x/y"}})
    with pytest.raises(RecipeError, match=r"data is required"):
        load_recipe(str(path))


def test_overrides_are_typed_and_nested() -> None:
    assert parse_overrides(["train.max_steps=2", "adapter.use_dora=true", "model.name=a/b"]) == {
        "train": {"max_steps": 2},
        "adapter": {"use_dora": True},
        "model": {"name": "a/b"},
    }
    recipe = load_recipe("lora-small", ["train.max_steps=3", "adapter.r=4"])
    assert recipe.train.max_steps == 3 and recipe.adapter.r == 4


@pytest.mark.parametrize("override", ["train.max_steps", "=3", "train..x=1"])
def test_malformed_override_is_rejected(override: str) -> None:
    with pytest.raises(RecipeError, match=r"section\.field=value"):
        parse_overrides([override])


def test_unknown_recipe_name_suggests_close_match() -> None:
    with pytest.raises(RecipeError, match="Did you mean 'lora-small'"):
        load_recipe("lora-smal")


def test_recipe_is_frozen() -> None:
    recipe = load_recipe("lora-small")
    with pytest.raises(Exception, match="frozen"):
        recipe.train.max_steps = 5  # type: ignore[misc]


def test_recipes_in_subfolders_are_found_by_name_and_absolute_paths_are_paths() -> None:
    from pipeline.config.loader import find_recipe
    from pipeline.errors import RecipeError

    assert find_recipe("gpu/llama-3.1-8b-lora") == RECIPES_DIR / "gpu" / "llama-3.1-8b-lora.yaml"
    with pytest.raises(RecipeError, match=r"^/nonexistent/my-recipe: recipe file not found"):
        find_recipe("/nonexistent/my-recipe")
