"""Glue around trl's SFTTrainer: the SFTConfig a recipe implies, and the trainer built from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.models.precision import resolved_precision

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer


def _precision(recipe: Recipe) -> dict[str, bool]:
    precision = resolved_precision(recipe.train.precision, recipe.model.quantization)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def build_sft_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> SFTConfig:
    """The trl SFTConfig for a recipe; checkpoints and logs go under run_dir."""
    import torch
    from trl import SFTConfig

    train = recipe.train
    report_to = [r for r in train.report_to if r != "none"] or "none"
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    kwargs: dict[str, Any] = {
        "output_dir": str(run_dir / "checkpoints"),
        "num_train_epochs": train.epochs,
        "max_steps": train.max_steps,
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": recipe.eval.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        # transformers reads warmup_steps >= 1 as steps and a float < 1 as a share of all steps.
        "warmup_steps": train.warmup_steps or train.warmup_ratio,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "optim": train.optim,
        "seed": train.seed,
        "data_seed": train.seed,
        # Examples are tokenized, masked and truncated by pipeline.data.formatting; trl only packs when asked.
        "max_length": train.max_length if train.packing else None,
        "packing": train.packing,
        "padding_free": train.padding_free and not train.packing,
        "train_sampling_strategy": "group_by_length"
        if train.group_by_length and not train.packing
        else "random",
        "activation_checkpointing": train.gradient_checkpointing,
        "logging_steps": train.logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if train.eval_steps else "no",
        "eval_steps": train.eval_steps or None,
        # Early stopping ends on the best held-out loss: the trainer reloads that checkpoint at the end.
        "load_best_model_at_end": bool(train.early_stopping_patience),
        "metric_for_best_model": "eval_loss" if train.early_stopping_patience else None,
        "greater_is_better": False if train.early_stopping_patience else None,
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": train.save_total_limit,
        "report_to": report_to,
        "run_name": recipe.name,
        "disable_tqdm": True,  # pipeline.train.progress draws a rich progress bar instead
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Loss = token mean over the whole optimizer step, all ranks and micro-batches together, so
        # neither accumulation nor world size changes the result (tests/integration/train/test_invariants.py).
        "average_tokens_across_devices": True,
        **_precision(recipe),
    }
    if distributed and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # only when distributed: gloo in a single process crashes
    if dry_run:
        kwargs["report_to"] = "none"
    return SFTConfig(**kwargs)


def build_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
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
    return _trainer_class(train.group_by_length and not train.packing)(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=None if is_peft_model(model) else peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )


def _trainer_class(group_by_length: bool) -> type[SFTTrainer]:
    """SFTTrainer whose adapters take their inputs as they come while mixed precision autocasts every forward,
    and whose group_by_length batches come in random order (pipeline.train.patches.trainer_sampler)."""
    from peft.helpers import disable_input_dtype_casting
    from trl import SFTTrainer

    from pipeline.train.patches.trainer_sampler import sampler_mixins

    class PipelineSFTTrainer(*sampler_mixins(group_by_length), SFTTrainer):  # type: ignore[misc]
        def train(self, *args: Any, **kwargs: Any) -> Any:
            # Mixed precision runs every forward under autocast, which casts each LoRA input to bf16 for
            # its matmul anyway; peft's own cast to the fp32 adapter dtype first only adds two copies of
            # every linear layer's input, one kept for backward (bench/RESULTS.md: 1.05x per step, less memory).
            mixed = bool(self.args.bf16 or self.args.fp16)
            with disable_input_dtype_casting(self.model, active=mixed):
                return super().train(*args, **kwargs)

    return PipelineSFTTrainer
