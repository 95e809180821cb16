"""GRPO's loss variants and RLOO's settings reach trl's configs; the choices match what the installed trl
accepts; the flat-reward warning fires once, and only when nearly every prompt group is flat."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.config.stages import GRPO_LOSSES, IMPORTANCE_SAMPLING_LEVELS
from pipeline.errors import RecipeError
from pipeline.train.reward_spread import ZERO_SPREAD_KEY, RewardSpreadWarning

REWARDS = [{"function": "length", "target_chars": 8}, {"function": "exact_match", "weight": 2.0}]


def _help(name: str) -> str:
    from trl import GRPOConfig

    return {field.name: field for field in dataclasses.fields(GRPOConfig)}[name].metadata["help"]


def test_grpo_choices_are_what_trl_documents_and_its_trainer_handles() -> None:
    """A canary: a trl upgrade that adds, renames or drops a loss or a level fails here, not mid-run."""
    from trl import GRPOTrainer

    documented = re.search(r"Supported values are (.*?)\. ", _help("loss_type"))
    assert documented is not None, "GRPOConfig.loss_type's help no longer lists its values"
    assert set(re.findall(r"'(\w+)'", documented.group(1))) == set(GRPO_LOSSES)
    source = inspect.getsource(GRPOTrainer)
    handled = set(re.findall(r'loss_type == "(\w+)"', source))
    for listed in re.findall(r"loss_type in \[([^\]]*)\]", source):
        handled |= set(re.findall(r'"(\w+)"', listed))
    assert handled == set(GRPO_LOSSES)

    levels = re.search(r"computed at the (.*?) level", _help("importance_sampling_level"))
    assert levels is not None, "GRPOConfig.importance_sampling_level's help no longer names its levels"
    assert set(re.findall(r"'(\w+)'", levels.group(1))) == set(IMPORTANCE_SAMPLING_LEVELS)
    assert set(re.findall(r'importance_sampling_level == "(\w+)"', source)) == set(IMPORTANCE_SAMPLING_LEVELS)


def test_loss_type_and_importance_sampling_level_reach_grpo_config(make_recipe: Any, tmp_path: Path) -> None:
    from pipeline.train.stages.build import build_stage_config

    path = make_recipe(
        train={"stage": "grpo", "batch_size": 4}, grpo={"num_generations": 2, "rewards": REWARDS}
    )
    gspo = ["grpo.loss_type=grpo", "grpo.importance_sampling_level=sequence", "train.report_to=[none]"]
    config = build_stage_config(load_recipe(str(path), gspo), tmp_path, dry_run=True)
    assert (config.loss_type, config.importance_sampling_level) == ("grpo", "sequence")
    default = build_stage_config(load_recipe(str(path), ["train.report_to=[none]"]), tmp_path, dry_run=True)
    assert (default.loss_type, default.importance_sampling_level) == ("dapo", "token")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["grpo.importance_sampling_level=step"],
            r"grpo\.importance_sampling_level: .*'token' or 'sequence'",
        ),
        (["grpo.loss_type=ppo"], r"grpo\.loss_type: .*'grpo', 'dr_grpo'"),
        (["grpo.loss_type=luspo"], r"loss_type luspo needs importance_sampling_level: sequence"),
        (
            ["grpo.loss_type=vespo", "grpo.importance_sampling_level=sequence"],
            r"set importance_sampling_level: token",
        ),
    ],
)
def test_unknown_or_mismatched_grpo_variants_are_one_line_errors(
    make_recipe: Any, overrides: list[str], message: str
) -> None:
    path = make_recipe(train={"stage": "grpo", "batch_size": 4}, grpo={"num_generations": 2})
    with pytest.raises(RecipeError, match=message) as caught:
        load_recipe(str(path), overrides)
    assert "\n" not in str(caught.value).strip()


def test_rloo_settings_reach_rloo_config(make_recipe: Any, tmp_path: Path) -> None:
    from pipeline.train.stages.build import build_stage_config

    rloo = {
        "num_generations": 2,
        "max_completion_length": 9,
        "temperature": 0.7,
        "beta": 0.1,
        "rewards": REWARDS,
    }
    path = make_recipe(train={"stage": "rloo", "batch_size": 4}, rloo=rloo)
    config = build_stage_config(load_recipe(str(path), ["train.report_to=[none]"]), tmp_path, dry_run=True)
    assert type(config).__name__ == "RLOOConfig"
    assert (config.num_generations, config.max_completion_length) == (2, 9)
    assert (config.temperature, config.beta, config.reward_weights) == (0.7, 0.1, [1.0, 2.0])


def test_rloo_groups_must_fit_the_batch_and_its_section_its_stage(make_recipe: Any) -> None:
    odd = make_recipe(name="odd", train={"stage": "rloo", "batch_size": 3}, rloo={"num_generations": 2})
    with pytest.raises(RecipeError, match=r"must be a multiple of rloo\.num_generations \(2\)"):
        load_recipe(str(odd))
    misplaced = make_recipe(
        name="misplaced", train={"stage": "grpo", "batch_size": 4}, rloo={"num_generations": 2}
    )
    with pytest.raises(
        RecipeError, match=r"the rloo section applies to train\.stage: rloo, but train\.stage is grpo"
    ):
        load_recipe(str(misplaced))
    with pytest.raises(RecipeError, match=r"rloo\.loss_type"):  # GRPO's loss variants are not RLOO's
        load_recipe(
            str(make_recipe(name="loss", train={"stage": "rloo", "batch_size": 4})), ["rloo.loss_type=grpo"]
        )


def _feed(callback: RewardSpreadWarning, shares: list[float], end: bool = False) -> None:
    state = SimpleNamespace(is_world_process_zero=True)
    for share in shares:
        callback.on_log(None, state, None, logs={"loss": 0.0, ZERO_SPREAD_KEY: share})
        callback.on_log(None, state, None, logs={f"eval_{ZERO_SPREAD_KEY}": 1.0})  # evaluation: not counted
    if end:
        callback.on_train_end(None, state, None)


def test_flat_rewards_warn_once_naming_the_fixes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.train.reward_spread"):
        _feed(RewardSpreadWarning("rloo"), [1.0, 0.95, 1.0, 1.0, 1.0], end=True)
    (record,) = caplog.records
    message = record.getMessage()
    assert "at least 95% of prompt groups" in message and "first 3 logged steps" in message
    assert "rloo.num_generations" in message and "rloo.temperature" in message and "softer reward" in message


@pytest.mark.parametrize(
    "shares",
    [[1.0, 1.0, 0.5, 1.0, 1.0], [1.0, 1.0, 0.9]],  # one varying early step, or exactly at the threshold
)
def test_rewards_that_vary_early_do_not_warn(caplog: pytest.LogCaptureFixture, shares: list[float]) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.train.reward_spread"):
        _feed(RewardSpreadWarning("grpo"), shares, end=True)
    assert not caplog.records


def test_a_run_shorter_than_three_logs_is_judged_on_what_it_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.train.reward_spread"):
        _feed(RewardSpreadWarning("grpo"), [1.0, 1.0])
        assert not caplog.records  # undecided until training ends
        _feed(RewardSpreadWarning("grpo"), [1.0, 1.0], end=True)
    assert len(caplog.records) == 1 and "first 2 logged steps" in caplog.records[0].getMessage()
