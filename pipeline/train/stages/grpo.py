"""GRPO (train.stage: grpo) over trl's GRPOTrainer: the GRPOConfig a recipe implies and its reward functions
(which RLOO, pipeline.train.stages.rloo, shares with it).

Generation runs through transformers (on CPU too); vLLM generation is trl's `use_vllm`, for GPU users who run
trl directly (docs/preference.md). With grpo.beta 0 (the default) there is no reference at all; with beta > 0
the reference is the adapter-disabled base.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import GRPOSpec, SampledSpec
from pipeline.train.arguments import training_arguments
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import GRPOConfig

# The data set columns trl reads: the prompt, and the answer reward functions compare with.
COLUMNS = ["prompt", "answer"]


def build_grpo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> GRPOConfig:
    """The trl GRPOConfig for a recipe (train.stage: grpo); checkpoints and logs go under run_dir."""
    from trl import GRPOConfig

    grpo = recipe.settings_of(GRPOSpec)
    return GRPOConfig(
        **training_arguments(recipe, run_dir, dry_run),
        **sampling_arguments(grpo),
        loss_type=grpo.loss_type,
        importance_sampling_level=grpo.importance_sampling_level,
    )


def sampling_arguments(settings: SampledSpec) -> dict[str, Any]:
    """The config arguments GRPOConfig and RLOOConfig share, from the stage's section."""
    return {
        "num_generations": settings.num_generations,
        "max_completion_length": settings.max_completion_length,
        "temperature": settings.temperature,
        "beta": settings.beta,
        "reward_weights": [reward.weight for reward in settings.rewards],
        "disable_dropout": True,
    }


def sampled_settings(recipe: Recipe) -> SampledSpec:
    """The section of the recipe's sampling stage (grpo, rloo); the grpo defaults for any other stage."""
    settings = recipe.stage_settings
    return settings if isinstance(settings, SampledSpec) else recipe.settings_of(GRPOSpec)


def reward_functions(recipe: Recipe) -> tuple[list[Any], list[float]]:
    """The recipe's reward functions and weights; a user file is imported now (validate calls this too)."""
    from pipeline.train.rewards import resolve_rewards

    beside = recipe.path.parent if recipe.path else None
    source = str(recipe.path or recipe.name)
    return resolve_rewards(sampled_settings(recipe), recipe.eval.embedding_model, beside, source)


def sampling_inputs(
    recipe: Recipe, model: Any, train: Dataset, eval_dataset: Dataset | None
) -> dict[str, Any]:
    """Trainer inputs of GRPO and RLOO (Stage.trainer_inputs): the reward functions and the columns they read."""
    functions, _weights = reward_functions(recipe)
    return {
        "reward_funcs": functions,
        "train_dataset": train.select_columns(COLUMNS),
        "eval_dataset": eval_dataset.select_columns(COLUMNS) if eval_dataset is not None else None,
    }


def padded(recipe: Recipe) -> str:
    """Why GRPO's and RLOO's batches are not padding-free rows (Stage.padded)."""
    return f"trl's {recipe.train.stage.upper()} batches pad prompts and completions"


def sampling_mixins(recipe: Recipe) -> tuple[type, ...]:
    """Mixins of GRPO and RLOO (Stage.mixins): each round's rollouts and rewards recorded in the run folder
    (pipeline.train.rollout_log); rollouts decode through the merged adapter (a patch of trl's
    generation, pipeline.train.patches.trl_rollouts; merged_rollouts: false in the stage's section turns it
    off)."""
    from pipeline.models.merged_view import adapter_merged
    from pipeline.train.patches.registry import record
    from pipeline.train.patches.trl_rollouts import NAME, merged_rollouts
    from pipeline.train.rollout_log import RecordedRollouts

    if not sampled_settings(recipe).merged_rollouts:
        record(NAME, False, f"{recipe.train.stage}.merged_rollouts is off")
        return (RecordedRollouts,)
    return (RecordedRollouts, *merged_rollouts(adapter_merged))


def sampling_callbacks(recipe: Recipe) -> list[Any]:
    """Callbacks of GRPO and RLOO (Stage.callbacks): one warning when rewards do not vary within groups."""
    from pipeline.train.reward_spread import reward_spread_callbacks

    return reward_spread_callbacks(recipe)


STAGE = Stage(
    name="grpo",
    trainer="GRPOTrainer",
    data="prompts",
    rows_per_example=1,
    evaluation="rewards",
    card="GRPO on prompts with reward functions",
    build_config=build_grpo_config,
    trainer_inputs=sampling_inputs,
    padded=padded,
    mixins=sampling_mixins,
    callbacks=sampling_callbacks,
    forwards_under_autocast=False,
)
