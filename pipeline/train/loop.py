"""Train: build the trainer for a recipe, run it with the progress bar, the non-finite guard and the signal
handler, and report what came out. `workflow.finetune`, `pipeline tokens` and the tests call it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.guards import NonFiniteGuard
from pipeline.train.progress import RichProgressCallback
from pipeline.train.resume import resume_command
from pipeline.train.sft import build_trainer
from pipeline.train.signals import StopOnSignal

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import SFTTrainer


@dataclass
class Trained:
    """The trainer after train() and the `train` section of metrics.json."""

    trainer: SFTTrainer
    metrics: dict[str, Any]


def train_model(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    checkpoint: Path | None = None,
    callbacks: list[Any] | None = None,
) -> Trained:
    """Train on `dataset` (from `checkpoint` when resuming); Ctrl-C/SIGTERM checkpoint and stop with the
    resume command, a non-finite loss stops before the weights update."""
    from transformers import PrinterCallback

    stopper = StopOnSignal()
    trainer = build_trainer(
        recipe,
        run_dir,
        model,
        tokenizer,
        dataset,
        None,
        callbacks=[RichProgressCallback(), NonFiniteGuard(), stopper, *(callbacks or [])],
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss; no raw log dicts on stdout
    started = time.perf_counter()
    with stopper.active():
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopper.raise_if_stopped(resume_command(recipe, run_dir))
    metrics = {
        "steps": output.global_step,
        "loss": output.training_loss,
        "seconds": time.perf_counter() - started,
        "examples": len(dataset),
        "log_history": trainer.state.log_history,
        "world_size": trainer.args.world_size,
    }
    return Trained(trainer=trainer, metrics=metrics)
