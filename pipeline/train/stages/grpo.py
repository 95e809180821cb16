"""GRPO (train.stage: grpo) over trl's GRPOTrainer: the GRPOConfig a recipe implies and its reward functions.

Generation runs through transformers (on CPU too); vLLM generation is trl's `use_vllm`, for GPU users who run
trl directly (docs/preference.md). With grpo.beta 0 (the default) there is no reference at all; with beta > 0
the reference is the adapter-disabled base.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
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

    grpo = recipe.grpo_settings
    return GRPOConfig(
        **training_arguments(recipe, run_dir, dry_run),
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        beta=grpo.beta,
        loss_type=grpo.loss_type,
        reward_weights=[reward.weight for reward in grpo.rewards],
        disable_dropout=True,
    )


def reward_functions(recipe: Recipe) -> tuple[list[Any], list[float]]:
    """The recipe's reward functions and weights; a user file is imported now (validate calls this too)."""
    from pipeline.train.rewards import resolve_rewards

    beside = recipe.path.parent if recipe.path else None
    source = str(recipe.path or recipe.name)
    return resolve_rewards(recipe.grpo_settings, recipe.eval.embedding_model, beside, source)


def _inputs(recipe: Recipe, model: Any, train: Dataset, eval_dataset: Dataset | None) -> dict[str, Any]:
    functions, _weights = reward_functions(recipe)
    return {
        "reward_funcs": functions,
        "train_dataset": train.select_columns(COLUMNS),
        "eval_dataset": eval_dataset.select_columns(COLUMNS) if eval_dataset is not None else None,
    }


STAGE = Stage(
    name="grpo",
    trainer="GRPOTrainer",
    data="prompts",
    rows_per_example=1,
    evaluation="rewards",
    card="GRPO on prompts with reward functions",
    build_config=build_grpo_config,
    trainer_inputs=_inputs,
    padded=lambda recipe: "trl's GRPO batches pad prompts and completions",
    forwards_under_autocast=False,
)
