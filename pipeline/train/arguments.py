"""The transformers TrainingArguments every stage's trl config shares: schedule, precision, logging, saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.schema import Recipe
from pipeline.models.precision import resolved_precision
from pipeline.ranks import is_distributed, sharding_requested


def training_arguments(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> dict[str, Any]:
    """Keyword arguments of the trl config (SFTConfig, DPOConfig) that do not depend on the stage.

    Checkpoints and logs go under run_dir; dry_run (validate) reports to no tracker."""
    import torch

    train = recipe.train
    report_to = [r for r in train.report_to if r != "none"] or "none"
    distributed = is_distributed()
    precision = resolved_precision(train.precision, recipe.model.quantization)
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
        "report_to": "none" if dry_run else report_to,
        "run_name": recipe.name,
        "disable_tqdm": True,  # pipeline.train.progress draws a rich progress bar instead
        "use_cpu": not torch.cuda.is_available(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        # Loss = token mean over the whole optimizer step, all ranks and micro-batches together, so
        # neither accumulation nor world size changes the result (tests/integration/train/test_invariants.py).
        "average_tokens_across_devices": True,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
    }
    if distributed:
        # Every trainable parameter (LoRA or full) takes part in each forward, so DDP need not search the
        # graph for unused ones; peft models are no PreTrainedModel, for which transformers would turn it on.
        kwargs["ddp_find_unused_parameters"] = False
        kwargs["ddp_timeout"] = train.distributed_timeout
    if distributed and not torch.cuda.is_available():
        kwargs["ddp_backend"] = "gloo"  # only when distributed: gloo in a single process crashes
        if sharding_requested() == "FSDP":  # accelerate alone would train DDP on CPU processes
            from pipeline.train.patches.accelerate_fsdp_cpu import fsdp_on_cpu_processes

            fsdp_on_cpu_processes()
    return kwargs


def preference_arguments(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> dict[str, Any]:
    """training_arguments plus what every preference stage's trl config takes (DPO, KTO, ORPO, SimPO): whole
    examples up to train.max_length, and dropout off, so the two rows of a pair (and the policy and its
    reference at step 0) see the same network."""
    return {
        **training_arguments(recipe, run_dir, dry_run),
        "max_length": recipe.train.max_length,
        "disable_dropout": True,
    }
