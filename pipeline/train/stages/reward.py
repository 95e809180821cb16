"""Reward modelling (train.stage: reward) over trl's RewardTrainer: a one-output score head on the base,
trained with LoRA to score each preference pair's chosen answer above its rejected one (Bradley-Terry loss).

The model is the recipe's base under a sequence-classification head (pipeline.models.heads); peft trains the
head in full beside the LoRA layers (task type SEQ_CLS), and both are saved in the adapter folder. With
train.padding_free (the default) each micro-batch trains as one padding-free row (pipeline.train.reward_rows). The result
scores answers for GRPO and RLOO (grpo.rewards: [{model: RUN}], pipeline.train.reward_model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import RewardModelSpec
from pipeline.train.arguments import preference_arguments
from pipeline.train.stages.experimental import pairs_only
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from trl import RewardConfig


def build_reward_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> RewardConfig:
    """The trl RewardConfig for a recipe (train.stage: reward); checkpoints and logs go under run_dir."""
    from trl import RewardConfig

    return RewardConfig(
        **preference_arguments(recipe, run_dir, dry_run),
        center_rewards_coefficient=recipe.settings_of(RewardModelSpec).center_rewards_coefficient,
    )


def _inputs(recipe: Recipe, model: Any, train: Any, eval_dataset: Any) -> dict[str, Any]:
    """The pair columns, and with train.padding_free each micro-batch's answers in one row (train.reward_rows)."""
    from pipeline.train.reward_rows import PackedPairs

    return {
        **pairs_only(recipe, model, train, eval_dataset),
        **({"data_collator": PackedPairs()} if recipe.train.padding_free else {}),
    }


def _mixins(recipe: Recipe) -> tuple[type, ...]:
    from pipeline.train.reward_rows import PackedRewardRows

    return (PackedRewardRows,) if recipe.train.padding_free else ()


def _padded(recipe: Recipe) -> str:
    return "" if recipe.train.padding_free else "trl's reward collator pads chosen and rejected rows"


STAGE = Stage(
    name="reward",
    trainer="RewardTrainer",
    data="pairs",
    rows_per_example=2,  # chosen and rejected rows of every pair in one batch
    evaluation="scores",
    card="reward modelling on preference pairs (a sequence-classification head that scores answers)",
    build_config=build_reward_config,
    trainer_inputs=_inputs,
    padded=_padded,
    mixins=_mixins,
    head="score",
    fused_lm_head=False,  # no LM head: one score per sequence
)
