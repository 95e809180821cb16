"""Glue around trl's SFTTrainer: the SFTConfig a recipe implies, and the trainer built from it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer


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
        train_sampling_strategy="group_by_length"
        if train.group_by_length and not train.packing and not streaming
        else "random",
    )


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset | IterableDataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> SFTTrainer:
    """An SFTTrainer over pre-tokenized data, with the recipe's LoRA config (None = full fine-tuning); a model
    that already carries an adapter (model.adapter) trains that adapter further.

    The speed levers it turns on are recorded in pipeline.train.patches.registry (manifest.json lists them)."""
    from accelerate.utils import is_peft_model

    from pipeline.models.adapters import peft_config_for
    from pipeline.train.attention import use_packed_sdpa
    from pipeline.train.patches.registry import record
    from pipeline.train.patches.trl_lm_head import score_trained_positions_only

    train = recipe.train
    score_trained_positions_only(train.score_trained_only)
    rows = train.padding_free or train.packing
    record("packed_sdpa", rows and use_packed_sdpa(model), "" if rows else "padded batches")
    args = build_sft_config(recipe, run_dir)
    mixed = bool(args.bf16 or args.fp16)
    record("skip_peft_input_casts", mixed and recipe.adapter.method != "full", "" if mixed else "no autocast")
    grouped = train.group_by_length and not train.packing and not recipe.data.streaming
    return _trainer_class(grouped)(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=None if is_peft_model(model) else peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )


def _trainer_class(group_by_length: bool) -> type[SFTTrainer]:
    """SFTTrainer whose adapters take their inputs as they come while mixed precision autocasts every forward
    and add their updates in one multiply on CPU (pipeline.train.patches.peft_lora), and whose group_by_length
    batches come in random order (pipeline.train.patches.trainer_sampler)."""
    from trl import SFTTrainer

    from pipeline.train.flop_count import CachedFlopCount
    from pipeline.train.patches.trainer_sampler import sampler_mixins

    class PipelineSFTTrainer(CachedFlopCount, *sampler_mixins(group_by_length), SFTTrainer):  # type: ignore[misc]
        def train(self, *args: Any, **kwargs: Any) -> Any:
            with adapter_levers(self.model, self.args):
                return super().train(*args, **kwargs)

    return PipelineSFTTrainer


@contextlib.contextmanager
def adapter_levers(model: Any, args: Any) -> Iterator[None]:
    """While a trainer trains: no peft input casts under mixed precision, LoRA updates in one multiply on CPU."""
    from peft.helpers import disable_input_dtype_casting

    from pipeline.train.patches.peft_lora import lora_updates_in_one_multiply

    # Mixed precision runs every forward under autocast, which casts each LoRA input to bf16 for its matmul
    # anyway; peft's own cast to the fp32 adapter dtype first only adds two copies of every linear layer's
    # input, one kept for backward (bench/RESULTS.md: 1.10x per step, less memory).
    mixed = bool(args.bf16 or args.fp16)
    with (
        disable_input_dtype_casting(model, active=mixed),
        lora_updates_in_one_multiply(model, active=args.device.type == "cpu"),
    ):
        yield
