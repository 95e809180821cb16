"""The reward stage's settings and GRPO's reward-model entries are checked when the recipe loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError


def _pairs_recipe(make_recipe: Any, **sections: Any) -> Path:
    return make_recipe(name="reward", train={"stage": "reward", **sections.pop("train", {})}, **sections)


def test_reward_section_reaches_reward_config(make_recipe: Any, tmp_path: Path) -> None:
    from pipeline.train.stages.build import build_stage_config

    path = _pairs_recipe(make_recipe, reward={"center_rewards_coefficient": 0.02})
    config = build_stage_config(load_recipe(str(path), ["train.report_to=[none]"]), tmp_path, dry_run=True)
    assert type(config).__name__ == "RewardConfig"
    assert config.center_rewards_coefficient == 0.02
    assert config.disable_dropout is True


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"adapter": {"method": "full"}},
            r"train\.stage reward trains a new LoRA adapter .*adapter\.method: lora",
        ),
        ({"reward": {"center_rewards_coefficient": -1}}, r"reward\.center_rewards_coefficient"),
        ({"train": {"stage": "dpo"}}, r"the reward section applies to train\.stage: reward"),
    ],
)
def test_bad_reward_settings_are_one_line(make_recipe: Any, sections: dict[str, Any], message: str) -> None:
    sections = {"reward": {}, **sections}
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(_pairs_recipe(make_recipe, **sections)))


@pytest.mark.parametrize(
    ("reward", "message"),
    [
        ({"function": "exact_match", "model": "runs/x"}, "give either function .* or model .*not both"),
        ({}, "give either function .* or model"),
        ({"model": "runs/x", "pattern": "a"}, "pattern and target_chars go with a function"),
    ],
)
def test_a_reward_entry_names_a_function_or_a_model(
    make_recipe: Any, reward: dict[str, Any], message: str
) -> None:
    path = make_recipe(
        name="grpo",
        train={"stage": "grpo", "batch_size": 2},
        grpo={"num_generations": 2, "rewards": [reward]},
    )
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(path))
