"""RLOO (train.stage: rloo) over trl's RLOOTrainer: REINFORCE with a leave-one-out baseline.

Like GRPO it samples rloo.num_generations answers per prompt and scores them with the same reward functions
(pipeline.train.rewards); each answer's advantage is its reward minus the mean reward of the other answers to
the same prompt, with no per-group scaling by the standard deviation. With rloo.beta > 0 trl subtracts the
sequence's KL to the reference (the adapter-disabled base) from its reward. Data, trainer inputs, evaluation
and the flat-reward warning are GRPO's (pipeline.train.stages.grpo).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments
from pipeline.train.stages.grpo import (
    padded,
    sampled_settings,
    sampling_arguments,
    sampling_callbacks,
    sampling_inputs,
    sampling_mixins,
)
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from trl import RLOOConfig


def build_rloo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> RLOOConfig:
    """The trl RLOOConfig for a recipe (train.stage: rloo); checkpoints and logs go under run_dir."""
    from trl import RLOOConfig

    return RLOOConfig(
        **training_arguments(recipe, run_dir, dry_run),
        **sampling_arguments(sampled_settings(recipe)),
    )


STAGE = Stage(
    name="rloo",
    trainer="RLOOTrainer",
    data="prompts",
    rows_per_example=1,
    evaluation="rewards",
    card="RLOO on prompts with reward functions",
    build_config=build_rloo_config,
    trainer_inputs=sampling_inputs,
    padded=padded,
    mixins=sampling_mixins,
    callbacks=sampling_callbacks,
    # trl generates RLOO's completions outside autocast, as GRPO's (Stage.forwards_under_autocast).
    forwards_under_autocast=False,
)
