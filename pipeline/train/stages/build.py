"""One trainer builder per stage (train.stage): the SFT, DPO, KTO and GRPO trainers over trl's, picked by the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> Trainer:
    """The trainer of the recipe's stage (pipeline.train.sft, .dpo, .kto or .grpo), built over the prepared data;
    on CPU the process keeps freed memory for the steps to reuse (train.keep_freed_memory)."""
    builder = _builder(recipe.train.stage)
    trainer = builder(recipe, run_dir, model, tokenizer, train_dataset, eval_dataset, callbacks)
    if recipe.train.keep_freed_memory and trainer.args.device.type == "cpu":
        from pipeline.train.allocator import keep_freed_memory

        keep_freed_memory()
    return trainer


def _builder(stage: str) -> Any:
    """The build function of one training stage."""
    if stage == "dpo":
        from pipeline.train.dpo import build_dpo_trainer

        return build_dpo_trainer
    if stage == "grpo":
        from pipeline.train.grpo import build_grpo_trainer

        return build_grpo_trainer
    if stage == "kto":
        from pipeline.train.kto import build_kto_trainer

        return build_kto_trainer
    from pipeline.train.sft import build_trainer as build_sft_trainer

    return build_sft_trainer


def build_stage_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> Any:
    """The trl config (SFTConfig, DPOConfig, KTOConfig, GRPOConfig) of the recipe's stage."""
    if recipe.train.stage == "dpo":
        from pipeline.train.dpo import build_dpo_config

        return build_dpo_config(recipe, run_dir, dry_run)
    if recipe.train.stage == "grpo":
        from pipeline.train.grpo import build_grpo_config

        return build_grpo_config(recipe, run_dir, dry_run)
    if recipe.train.stage == "kto":
        from pipeline.train.kto import build_kto_config

        return build_kto_config(recipe, run_dir, dry_run)
    from pipeline.train.sft import build_sft_config

    return build_sft_config(recipe, run_dir, dry_run)
