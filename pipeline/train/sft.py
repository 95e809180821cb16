"""Glue around trl's SFTTrainer: the SFTConfig a recipe implies, and the trainer built from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.recipe import Recipe

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTConfig, SFTTrainer


def resolved_precision(recipe: Recipe) -> str:
    """fp32, bf16 or fp16 for this machine: auto = bf16 autocast on a bf16 GPU, native = bf16 autocast wherever
    bf16 is native (CPUs with AVX512-BF16/AMX too, as TRL's own default does on any CPU); neither for
    quantized models."""
    from pipeline.modeling import bf16_gpu, bf16_is_native

    precision = recipe.train.precision
    if precision in ("auto", "native"):
        capable = bf16_gpu() if precision == "auto" else bf16_is_native()
        return "bf16" if capable and recipe.model.quantization == "none" else "fp32"
    return precision


def _precision(recipe: Recipe) -> dict[str, bool]:
    precision = resolved_precision(recipe)
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
        "warmup_steps": train.warmup_ratio,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "optim": train.optim,
        "seed": train.seed,
        "data_seed": train.seed,
        # Examples are tokenized, masked and truncated by pipeline.formatting; trl only packs when asked.
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
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": train.save_total_limit,
        "report_to": report_to,
        "run_name": recipe.name,
        "disable_tqdm": True,  # pipeline.progress draws a rich progress bar instead
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Loss = token mean over the whole optimizer step, all ranks and micro-batches together, so
        # neither accumulation nor world size changes the result (tests/integration/test_invariants.py).
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
    """An SFTTrainer over pre-tokenized data, with the recipe's LoRA config (None = full fine-tuning)."""
    from pipeline.adapters import peft_config_for
    from pipeline.attention import use_packed_sdpa
    from pipeline.speed import score_trained_positions_only

    score_trained_positions_only(recipe.train.score_trained_only)
    if recipe.train.padding_free or recipe.train.packing:
        use_packed_sdpa(model)
    return _trainer_class()(
        model=model,
        args=build_sft_config(recipe, run_dir),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )


def _trainer_class() -> type[SFTTrainer]:
    """SFTTrainer whose group_by_length batches come in random order (pipeline.sampling says why) and whose
    adapters take their inputs as they come while mixed precision autocasts every forward."""
    from peft.helpers import disable_input_dtype_casting
    from trl import SFTTrainer

    from pipeline.sampling import length_grouped_sampler

    class PipelineSFTTrainer(SFTTrainer):
        def train(self, *args: Any, **kwargs: Any) -> Any:
            # Mixed precision runs every forward under autocast, which casts each LoRA input to bf16 for
            # its matmul anyway; peft's own cast to the fp32 adapter dtype first only adds two copies of
            # every linear layer's input, one kept for backward (bench/RESULTS.md: 1.05x per step, less memory).
            mixed = bool(self.args.bf16 or self.args.fp16)
            with disable_input_dtype_casting(self.model, active=mixed):
                return super().train(*args, **kwargs)

        def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            grouped = self.args.train_sampling_strategy == "group_by_length"
            if grouped and dataset is not None and "input_ids" in getattr(dataset, "column_names", ()):
                return length_grouped_sampler(self, dataset)
            return super()._get_train_sampler(train_dataset)

    return PipelineSFTTrainer
