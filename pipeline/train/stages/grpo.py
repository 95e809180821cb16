"""Glue around trl's GRPOTrainer: the GRPOConfig a recipe implies, its reward functions, and the trainer.

Generation runs through transformers (on CPU too); vLLM generation is trl's `use_vllm`, for GPU users who run
trl directly (docs/preference.md). With grpo.beta 0 (the default) there is no reference at all; with beta > 0
the reference is handled as for DPO (pipeline.train.dpo).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import GRPOConfig, GRPOTrainer

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


def build_grpo_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> GRPOTrainer:
    """A GRPOTrainer over the recipe's prompts with its rewards and LoRA config (or the continued adapter)."""
    from accelerate.utils import is_peft_model
    from trl import GRPOTrainer

    from pipeline.models.adapters import peft_config_for
    from pipeline.train.dpo import drop_reference_adapter
    from pipeline.train.flop_count import CachedFlopCount
    from pipeline.train.patches.registry import record

    record("packed_sdpa", False, "trl's GRPO batches pad prompts and completions")
    functions, _weights = reward_functions(recipe)
    full = recipe.adapter.method == "full"

    class PipelineGRPOTrainer(CachedFlopCount, GRPOTrainer):  # type: ignore[misc]
        def train(self, *args: Any, **kwargs: Any) -> Any:
            output = super().train(*args, **kwargs)
            drop_reference_adapter(self.model)
            return output

    return PipelineGRPOTrainer(
        model=model,
        reward_funcs=functions,
        args=build_grpo_config(recipe, run_dir),
        train_dataset=train_dataset.select_columns(COLUMNS),
        eval_dataset=eval_dataset.select_columns(COLUMNS) if eval_dataset is not None else None,
        processing_class=tokenizer,
        peft_config=None if is_peft_model(model) or full else peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )
