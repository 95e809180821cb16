"""`pipeline tokens`: what a recipe (or a data file) costs in tokens and time before any training.

Per-example counts come from the recipe's tokenizer and chat template exactly as training sees them
(pipeline.data.tokenize.encode_record); tiktoken's cl100k_base and o200k_base counts sit beside them for API
prices and context limits. The training-time estimate divides the run's tokens by a throughput measured in
a few real SFTTrainer steps on this machine (or given).
"""

from __future__ import annotations

import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.formatting import TemplateMismatch
from pipeline.files import write_json

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from pipeline.config.schema import Recipe, TrainSpec

log = logging.getLogger(__name__)

PERCENTILES = (50, 90, 95, 99)
API_ENCODINGS = ("cl100k_base", "o200k_base")


def distribution(values: list[int]) -> dict[str, float]:
    """min, mean, percentiles (nearest rank) and max of a list of counts."""
    if not values:
        return {}
    ordered = sorted(values)
    stats: dict[str, float] = {"min": ordered[0], "mean": round(statistics.fmean(ordered), 2)}
    for p in PERCENTILES:
        stats[f"p{p}"] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]
    stats["max"] = ordered[-1]
    return stats


def model_counts(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, train: TrainSpec
) -> dict[str, Any]:
    """Per-example tokens and trained (loss) tokens with the recipe's tokenizer, before and after truncation
    to train.max_length."""
    from pipeline.data.tokenize import encode_record

    tokens, trained, kept, kept_trained, unrenderable = [], [], [], [], []
    for record in records:
        try:
            row = encode_record(record, tokenizer, train.max_length, train.loss_on)
        except TemplateMismatch:
            unrenderable.append(record.get("location", "record"))
            continue
        tokens.append(row["num_tokens"])
        trained.append(row["num_trained"])
        kept.append(len(row["input_ids"]))
        kept_trained.append(sum(row["assistant_masks"]))
    max_length = train.max_length
    over = sum(n > max_length for n in tokens)
    return {
        "examples": len(tokens),
        "per_example": tokens,
        "distribution": distribution(tokens),
        "trained_distribution": distribution(trained),
        "above_max_length": over,
        "share_above_max_length": round(over / len(tokens), 4) if tokens else 0.0,
        "tokens_per_epoch": sum(kept),
        "trained_tokens_per_epoch": sum(kept_trained),
        "tokens_cut_by_truncation": sum(tokens) - sum(kept),
        "unrenderable": unrenderable[:5],
        "unrenderable_count": len(unrenderable),
    }


def api_counts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-encoding totals and distributions with tiktoken, or a one-line reason where unavailable."""
    from pipeline.planning.api_tokens import EncodingUnavailable, count_record, get_encoding

    result: dict[str, Any] = {}
    for name in API_ENCODINGS:
        try:
            encoding = get_encoding(name)
        except EncodingUnavailable as exc:
            result[name] = {"unavailable": str(exc)}
            continue
        counts = [count_record(encoding, r) for r in records]
        result[name] = {"total": sum(counts), "distribution": distribution(counts), "per_example": counts}
    return result


def run_tokens(train: TrainSpec, counts: dict[str, Any], world_size: int = 1) -> dict[str, Any]:
    """Optimizer steps and tokens (forward-pass tokens, after truncation) the recipe's training run processes."""
    examples = counts["examples"]
    per_step = train.batch_size * train.grad_accum * world_size
    mean_tokens = counts["tokens_per_epoch"] / examples if examples else 0.0
    if train.max_steps > 0:
        steps = train.max_steps
        tokens = steps * per_step * mean_tokens
    else:
        steps = math.ceil(
            math.ceil(examples / (train.batch_size * world_size)) / train.grad_accum * train.epochs
        )
        tokens = counts["tokens_per_epoch"] * train.epochs
    return {
        "steps": steps,
        "examples_per_step": per_step,
        "tokens": round(tokens),
        "epochs": round(steps * per_step / examples, 3) if examples else 0.0,
    }


def measure_throughput(recipe: Recipe, records: list[dict[str, Any]], steps: int = 3) -> dict[str, Any]:
    """Training tokens per second over `steps` real training steps of the recipe on a sample of the data (the
    first step is warm-up and not timed); tokens are the sample's mean tokens per example times examples per
    step. The steps run through the same pieces as a finetune (pipeline.train.inputs / loop)."""
    import random

    import torch
    from transformers import TrainerCallback

    from pipeline.data.tokenize import tokenize_records
    from pipeline.models.loading import load_tokenizer
    from pipeline.train.inputs import load_model
    from pipeline.train.loop import train_model

    steps = max(2, steps)
    train = recipe.train
    per_step = train.batch_size * train.grad_accum
    sample = random.Random(train.seed).sample(records, min(len(records), per_step * steps))
    tokenizer = load_tokenizer(recipe.model)
    dataset = tokenize_records(sample, tokenizer, train, desc="Tokenizing the throughput sample")
    if recipe.stage_settings is not None:  # preference trainers read trl's columns; tokens: the SFT view
        from pipeline.data.pairs import pair_dataset

        limit = recipe.stage_settings.max_prompt_length
        dataset = pair_dataset(dataset, sample, tokenizer, train.max_length, limit)
    mean_tokens = statistics.fmean(len(ids) for ids in dataset["input_ids"])
    marks: list[float] = []

    class Clock(TrainerCallback):
        """Marks the end of each step and stops after `steps` (the recipe's own step count stays untouched)."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # GPU steps are asynchronous: time the finished work
            marks.append(time.perf_counter())
            control.should_save = False
            control.should_log = False
            control.should_evaluate = False
            control.should_training_stop = len(marks) >= steps

    model = load_model(recipe)
    with tempfile.TemporaryDirectory(prefix="pipeline-throughput-") as folder:
        train_model(recipe, Path(folder), model, tokenizer, dataset, callbacks=[Clock()])
    seconds = marks[-1] - marks[0]
    measured = len(marks) - 1
    tokens = measured * per_step * mean_tokens
    return {
        "tokens_per_second": round(tokens / seconds, 1),
        "measured_steps": measured,
        "seconds_per_step": round(seconds / measured, 3),
        "source": "measured",
    }


def estimate(train: TrainSpec, counts: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    """Training-time estimate: the run's tokens over the throughput (evaluation time not included)."""
    run = run_tokens(train, counts)
    tps = throughput.get("tokens_per_second") or 0.0
    return {**run, **throughput, "seconds": round(run["tokens"] / tps, 2) if tps else None}


def plot_histogram(values: list[int], max_length: int, path: Path, title: str) -> None:
    """A PNG histogram of per-example token counts with the max_length cut marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(values, bins=min(50, max(5, len(set(values)))), color="#4477aa")
    axis.axvline(max_length, color="#cc3311", linestyle="--", label=f"train.max_length = {max_length}")
    axis.set_xlabel("tokens per example (recipe tokenizer, chat template applied)")
    axis.set_ylabel("examples")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)


def token_report(
    target: str,
    output: Path | None = None,
    tokens_per_second: float | None = None,
    warmup_steps: int = 3,
    base: str = "lora-small",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Token counts, tiktoken comparisons and a training-time estimate for a recipe or data file (with dotted
    overrides); writes tokens.json and tokens.png into `output` (default <train.output_dir>/tokens-<name>/)."""
    from pipeline.data.adhoc import recipe_for
    from pipeline.data.splits import load_splits
    from pipeline.models.loading import load_tokenizer
    from pipeline.train.crosscheck import check_against_libraries

    recipe = recipe_for(target, base, overrides=overrides)
    check_against_libraries(recipe)  # the throughput probe builds the recipe's trainer
    is_file = Path(target).exists() and Path(target).suffix.lower() not in (".yaml", ".yml")
    name = Path(target).stem if is_file else recipe.name
    splits = load_splits(recipe.data)
    tokenizer = load_tokenizer(recipe.model)
    counts = model_counts(splits.train, tokenizer, recipe.train)
    report: dict[str, Any] = {
        "target": target,
        "recipe": recipe.name,
        "model": recipe.model.name,
        "max_length": recipe.train.max_length,
        "train": counts,
    }
    if splits.eval:
        report["eval"] = {
            k: v for k, v in model_counts(splits.eval, tokenizer, recipe.train).items() if k != "per_example"
        }
    report["api"] = api_counts(splits.train)
    if tokens_per_second:
        throughput = {"tokens_per_second": tokens_per_second, "source": "given"}
    elif warmup_steps > 0:
        throughput = measure_throughput(recipe, splits.train, warmup_steps)
    else:
        throughput = {"tokens_per_second": None, "source": "none"}
    report["estimate"] = estimate(recipe.train, counts, throughput)
    output = Path(output) if output else Path(recipe.train.output_dir) / f"tokens-{name}"
    output.mkdir(parents=True, exist_ok=True)
    plot_histogram(
        counts["per_example"],
        recipe.train.max_length,
        output / "tokens.png",
        f"{name}: {counts['examples']} training examples",
    )
    write_json(output / "tokens.json", report)
    report["output"] = str(output)
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The token report as short lines for the terminal."""
    train, dist = report["train"], report["train"]["distribution"]
    lines = [
        f"{report['target']}: {train['examples']} training examples, tokenizer of {report['model']}",
        "tokens per example: " + ", ".join(f"{k} {v:g}" for k, v in dist.items()),
        f"above max_length {report['max_length']}: {train['above_max_length']} "
        f"({100 * train['share_above_max_length']:.1f}%), {train['tokens_cut_by_truncation']} tokens cut",
        f"per epoch: {train['tokens_per_epoch']} tokens, {train['trained_tokens_per_epoch']} trained (loss) tokens",
    ]
    for name, api in report["api"].items():
        if "unavailable" in api:
            lines.append(f"{name}: unavailable ({api['unavailable']})")
        else:
            lines.append(
                f"{name}: {api['total']} tokens in total, p50 {api['distribution']['p50']:g}, "
                f"max {api['distribution']['max']:g} per example (chat API counting)"
            )
    est = report["estimate"]
    run = f"training run: {est['steps']} steps x {est['examples_per_step']} examples = {est['tokens']} tokens"
    if est.get("seconds") is None:
        lines.append(f"{run}; no throughput (give --tokens-per-second or --warmup-steps > 0)")
    else:
        lines.append(
            f"{run}; at {est['tokens_per_second']:g} tokens/s ({est['source']}) "
            f"~ {_duration(est['seconds'])} (evaluation not included)"
        )
    lines.append(f"wrote {report['output']}/tokens.json and tokens.png")
    return lines


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"
