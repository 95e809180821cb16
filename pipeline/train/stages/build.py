"""Build the trainer of a recipe's stage (train.stage) from its registry record: trl's trainer with the
pipeline's mixin, the stage's config and inputs, and the recipe's LoRA config."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.stages.mixin import Levers, PipelineTrainer
from pipeline.train.stages.registry import Stage, stage

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset | IterableDataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> Trainer:
    """The trainer of the recipe's stage over the prepared data, with its LoRA config (None for full
    fine-tuning); a model that already carries an adapter (model.adapter) trains that adapter further.

    The speed levers apply while it trains (pipeline.train.stages.mixin); the registry of patches records
    which were on (manifest.json lists them)."""
    from accelerate.utils import is_peft_model

    from pipeline.models.adapters import peft_config_for

    record = stage(recipe.train.stage)
    continued = is_peft_model(model)
    full = recipe.adapter.method == "full"
    trainer = trainer_class(record, recipe)(
        model=model,
        args=record.build_config(recipe, run_dir, False),
        processing_class=tokenizer,
        peft_config=None if continued or full else peft_config_for(recipe, model, tokenizer),
        callbacks=[*(callbacks or []), *record.callbacks(recipe)],
        **record.trainer_inputs(recipe, model, train_dataset, eval_dataset),
    )
    train = recipe.train
    trainer.levers = Levers(
        padded=record.padded(recipe),
        score_trained_only=train.score_trained_only and record.fused_lm_head,
        keep_freed_memory=train.keep_freed_memory,
        autocast_forwards=record.forwards_under_autocast,
    )
    return trainer


def trainer_class(record: Stage, recipe: Recipe) -> type[Trainer]:
    """trl's trainer of the stage with the pipeline's mixin (and the stage's own mixins for this recipe)."""
    base = trl_class(record.trainer)
    bases = (PipelineTrainer, *record.mixins(recipe), base)
    return type(f"Pipeline{base.__name__}", bases, {"__module__": __name__})


def trl_class(name: str) -> Any:
    """A trl class by name ("DPOTrainer"), or one of trl's experimental classes by module path
    ("trl.experimental.orpo:ORPOTrainer"); AttributeError or ImportError when the installed trl lacks it."""
    if ":" not in name:
        import trl

        return getattr(trl, name)
    module, _, attribute = name.partition(":")
    with warnings.catch_warnings():
        # trl warns on every first import of trl.experimental; the stage's canary guards that API instead
        # (pipeline.train.stages.experimental), and docs/preference.md says it may move.
        warnings.simplefilter("ignore", UserWarning)
        return getattr(importlib.import_module(module), attribute)


def build_stage_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> Any:
    """The trl config (SFTConfig, DPOConfig, KTOConfig, GRPOConfig, ...) of the recipe's stage."""
    return stage(recipe.train.stage).build_config(recipe, run_dir, dry_run)
