"""Train: build the trainer for a recipe, run it with the event log, the non-finite guard and the signal (or
stop request) handler, and report what came out. `workflow.finetune`, `pipeline tokens` and the tests call it."""

from __future__ import annotations

import time
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.data.streaming import unwrap_worker_error
from pipeline.errors import PipelineError
from pipeline.runs.events import EventLog
from pipeline.train.events import EventEmitter
from pipeline.train.guards import NonFiniteGuard
from pipeline.train.resume import resume_command
from pipeline.train.signals import StopOnSignal, StopRequest
from pipeline.train.stages.build import build_trainer
from pipeline.train.throughput import ThroughputMeter
from pipeline.train.trackers import tracking_to

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer


@dataclass
class Trained:
    """The trainer after train() and the `train` section of metrics.json."""

    trainer: Trainer
    metrics: dict[str, Any]


def train_model(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset | IterableDataset,
    checkpoint: Path | None = None,
    callbacks: list[Any] | None = None,
    eval_dataset: Dataset | None = None,
    events: EventLog | None = None,
    stop: StopRequest | None = None,
) -> Trained:
    """Train on `dataset` (from `checkpoint` when resuming); Ctrl-C/SIGTERM checkpoint and stop with the
    resume command, a non-finite loss stops before the weights update. With train.eval_steps the held-out
    loss on `eval_dataset` is logged every eval_steps (and early stopping watches it when asked). `events`
    receives started, step, held-out evaluation, checkpoint and trained events; a set `stop` ends training
    after the current step as Ctrl-C does."""
    from transformers import EarlyStoppingCallback, PrinterCallback

    stopper = StopOnSignal(stop)
    train = recipe.train
    meter = ThroughputMeter(train, dataset)
    extra = [*(callbacks or []), meter, *([EventEmitter(events)] if events is not None else [])]
    if train.early_stopping_patience and eval_dataset is not None:
        extra.append(EarlyStoppingCallback(train.early_stopping_patience, train.early_stopping_threshold))
    # Tracker callbacks read their settings when the trainer is built, and log while it trains.
    with tracking_to(run_dir, train.report_to):
        trainer = build_trainer(
            recipe,
            run_dir,
            model,
            tokenizer,
            dataset,
            eval_dataset if train.eval_steps else None,
            callbacks=[NonFiniteGuard(), stopper, *extra],
        )
        trainer.remove_callback(PrinterCallback)  # the events carry the loss; no raw log dicts on stdout
        started = time.perf_counter()
        with stopper.active():
            try:
                output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
            except PipelineError as error:  # a bad record in a streamed file, raised in a data-loader worker
                raise unwrap_worker_error(error) from None
    stopper.raise_if_stopped(resume_command(recipe, run_dir))
    metrics = {
        "steps": output.global_step,
        "loss": output.training_loss,
        "seconds": time.perf_counter() - started,
        "examples": len(dataset) if isinstance(dataset, Sized) else None,  # None: streamed (data.streaming)
        "log_history": trainer.state.log_history,
        "world_size": trainer.args.world_size,
        **meter.summary,  # tokens_per_second, roofline_share, ... (pipeline.train.throughput)
    }
    if train.early_stopping_patience and trainer.state.best_model_checkpoint:
        metrics["best_checkpoint"] = Path(trainer.state.best_model_checkpoint).name
        metrics["best_eval_loss"] = trainer.state.best_metric
        metrics["stopped_early"] = output.global_step < trainer.state.max_steps
    return Trained(trainer=trainer, metrics=metrics)
