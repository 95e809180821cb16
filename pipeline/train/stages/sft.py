"""Supervised fine-tuning (train.stage: sft) over trl's SFTTrainer: the SFTConfig a recipe implies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import SFTConfig


def build_sft_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> SFTConfig:
    """The trl SFTConfig for a recipe; checkpoints and logs go under run_dir."""
    from trl import SFTConfig

    from pipeline.data.streaming import stream_workers

    train, streaming = recipe.train, recipe.data.streaming
    # A stream (data.streaming) is read, checked and tokenized in data-loader workers, in its own order.
    # The workers stay between passes over the stream (no new fork each time max_steps outlasts the data).
    workers = stream_workers(recipe.data)
    streamed = {"dataloader_num_workers": workers, "dataloader_persistent_workers": True} if streaming else {}
    return SFTConfig(
        **training_arguments(recipe, run_dir, dry_run),
        **streamed,
        # Examples are tokenized, masked and truncated by pipeline.data.formatting; trl only packs when asked.
        max_length=train.max_length if train.packing else None,
        packing=train.packing,
        padding_free=train.padding_free and not train.packing,
        train_sampling_strategy="group_by_length" if _grouped(recipe) else "random",
    )


def _grouped(recipe: Recipe) -> bool:
    train = recipe.train
    return train.group_by_length and not train.packing and not recipe.data.streaming


def _inputs(recipe: Recipe, model: Any, train: Dataset, eval_dataset: Dataset | None) -> dict[str, Any]:
    return {"train_dataset": train, "eval_dataset": eval_dataset}


def _padded(recipe: Recipe) -> str:
    return "" if recipe.train.padding_free or recipe.train.packing else "padded batches"


def _mixins(recipe: Recipe) -> tuple[type, ...]:
    """Length-grouped batches in random order (pipeline.train.patches.trainer_sampler) when asked for."""
    from pipeline.train.patches.trainer_sampler import sampler_mixins

    return sampler_mixins(_grouped(recipe))


STAGE = Stage(
    name="sft",
    trainer="SFTTrainer",
    data="conversations",
    rows_per_example=1,
    evaluation="language",
    card="supervised fine-tuning",
    build_config=build_sft_config,
    trainer_inputs=_inputs,
    padded=_padded,
    mixins=_mixins,
)
