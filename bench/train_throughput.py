"""Training throughput: plain TRL vs TRL padding_free vs our lora-small path, alternating in one invocation.

All three train the packaged SmolLM2-135M-Instruct with lora-small's LoRA settings (r=16, alpha=32, dropout
0, all linear layers), max_length 512, the same batch, the same number of optimizer steps and the same loss
mask (the same pre-tokenized rows with assistant masks: trl turns them into labels for every variant).
Weights and precision are each side's default: the plain script loads fp32 weights and TRL's SFTConfig
turns bf16 autocast on (on CPU too); lora-small loads `native` weights (bf16 where the CPU or GPU has it).
Variant (d) is ours with --lever overrides on top, to time one lever against lora-small in the same
invocation (e.g. --variants cd --lever train.keep_freed_memory=false).

Measured per run, over the optimizer steps after the first (warm-up: allocator, lazy init), from the end
of one step to the end of the next, so fetching and collating each batch is inside the timed span:
real (non-padding) tokens per second, trained (loss) tokens per second, the padding share of the batches,
peak RSS of the process, the mean training loss and the loss on 32 held-out rows. Each variant runs in a
fresh process; the rounds alternate (a b c a b c ...). The last line is JSON with the median ratios
ours/(a) and ours/(b) and whether the targets of issue 11 hold.

    .venv/bin/python bench/train_throughput.py [--steps 8] [--rounds 2] [--batch 8] [--quick]
    .venv/bin/python bench/train_throughput.py --variants c --set train.padding_free=true   # one lever
    .venv/bin/python bench/train_throughput.py --data long.jsonl --max-length 2048 --batch 2   # longer rows
    python bench/train_throughput.py --model DIR --random-init --dtype bfloat16   # GPU: a larger shape
      (DIR holds config.json and the tokenizer; with CUDA each row adds GPU peak memory and MFU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "a": "plain TRL (defaults)",
    "b": "TRL padding_free=True",
    "c": "ours (lora-small)",
    "d": "ours, lever changed",
}
HELD_OUT = 32
_MAX_LENGTH = [512]  # --max-length, set once by main() in each process
# Held-out losses count as equal within this (nats): (a) and (b) train on the same examples with the same
# math apart from padding and differ by ~0.0005 from summation order; bf16 rounding moves it as much again.
EVAL_LOSS_TOLERANCE = 0.002


def _dataset(steps: int, batch: int, overrides: list[str], shape: list[str]) -> tuple[Any, Any, Any, Any]:
    """The same pre-tokenized train and held-out rows for every variant, and the recipe they come from."""
    from pipeline.config.loader import load_recipe
    from pipeline.train.inputs import prepare_inputs

    recipe = load_recipe(
        "lora-small",
        [
            f"train.max_length={_MAX_LENGTH[0]}",
            f"train.batch_size={batch}",
            f"train.max_steps={steps}",
            "train.report_to=[none]",
            *shape,
            *overrides,
        ],
    )
    # The whole training split, as lora-small trains on it (finetune's own preparation: hygiene, masks),
    # and the first HELD_OUT eval examples.
    inputs = prepare_inputs(recipe, held_out=True)
    held_out = inputs.eval.select(range(min(HELD_OUT, len(inputs.eval))))
    return recipe, inputs.tokenizer, inputs.train, held_out


class _Meter:
    """Tokens of every training batch, in the order the trainer asks for them, and the end time of each step."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, int]] = []  # (real, trained, padded) tokens per micro-batch
        self.step_ends: list[float] = []
        self.batches_at_step_end: list[int] = []  # micro-batches collated when each optimizer step ended

    def wrap(self, collator: Any) -> Any:
        def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collator(examples)
            real = sum(len(e["input_ids"]) for e in examples)
            # labels are shifted by one inside the model: the first position of a row never carries loss.
            trained = sum(sum(1 for label in e["labels"][1:] if label != -100) for e in examples)
            self.batches.append((real, trained, batch["input_ids"].numel()))
            return batch

        return collate

    def callback(self) -> Any:
        from transformers import TrainerCallback

        meter = self

        class StepEnds(TrainerCallback):
            def on_step_end(self, *args: Any, **kwargs: Any) -> None:
                meter.step_ends.append(time.perf_counter())
                meter.batches_at_step_end.append(len(meter.batches))

        return StepEnds()

    def rates(self) -> dict[str, float]:
        """Tokens per second over steps 2..N (step 1 is warm-up), and the padding share of those batches."""
        steps = len(self.step_ends)
        if steps < 2:
            raise SystemExit("need at least 2 optimizer steps: the first one is a warm-up and is not timed")
        seconds = self.step_ends[-1] - self.step_ends[0]
        # The trainer collates all micro-batches of a step before running them (to count the step's tokens).
        timed = self.batches[self.batches_at_step_end[0] : self.batches_at_step_end[-1]]
        real, trained, padded = (sum(column) for column in zip(*timed, strict=True))
        return {
            "timed_steps": steps - 1,
            "seconds": round(seconds, 2),
            "real_tokens_per_s": round(real / seconds, 1),
            "trained_tokens_per_s": round(trained / seconds, 1),
            "padding_share": round(1 - real / padded, 3),
        }


def _plain_trainer(variant: str, recipe: Any, model: Any, tokenizer: Any, dataset: Any, output: Path) -> Any:
    """The script TRL's documentation shows: SFTTrainer + LoraConfig, defaults otherwise (b: padding_free)."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(output),
        max_steps=recipe.train.max_steps,
        per_device_train_batch_size=recipe.train.batch_size,
        # padding_free without packing refuses max_length; the rows are already truncated to it.
        max_length=None if variant == "b" else recipe.train.max_length,
        padding_free=variant == "b",
        report_to="none",
        save_strategy="no",
        seed=42,
        learning_rate=recipe.train.learning_rate,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    adapter = recipe.adapter  # the same LoRA settings as ours
    peft_config = LoraConfig(
        r=adapter.r,
        lora_alpha=adapter.alpha,
        lora_dropout=adapter.dropout,
        target_modules=adapter.target_modules,
        task_type="CAUSAL_LM",
    )
    return SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
    )


def _model(recipe: Any, random_init: bool) -> Any:
    """The recipe's base model, or (random_init) one built from its config.json: a shape with no offline weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipeline.models.loading import load_base_model
    from pipeline.models.precision import resolve_dtype

    torch.manual_seed(0)
    if not random_init:
        return load_base_model(recipe.model)
    dtype = resolve_dtype(recipe.model.dtype)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(recipe.model.name), dtype=dtype)
    return model.to("cuda") if torch.cuda.is_available() else model


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant in this process and return its measurements."""
    import torch

    from pipeline.train.stages.build import build_trainer

    steps, batch, output = args.steps, args.batch, args.output / variant
    ours = variant in ("c", "d")
    overrides = [*args.set, *(args.lever if variant == "d" else [])] if ours else []
    recipe, tokenizer, dataset, held_out = _dataset(steps, batch, overrides, _shape(args, variant))
    model = _model(recipe, args.random_init)
    parameters = sum(p.numel() for p in model.parameters())
    if ours:
        trainer = build_trainer(recipe, output, model, tokenizer, dataset, None)
    else:
        trainer = _plain_trainer(variant, recipe, model, tokenizer, dataset, output)
    trainer.args.save_strategy = "no"
    meter = _Meter()
    collator = trainer.data_collator
    trainer.data_collator = meter.wrap(collator)
    trainer.add_callback(meter.callback())
    result = trainer.train()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the training peak: eval is smaller
    gpu = _gpu_figures(parameters, meter.rates()["real_tokens_per_s"], args.peak_tflops)
    share = _roofline_figures(trainer, recipe, dataset, meter.rates()["real_tokens_per_s"], variant)
    # Random weights learn nothing worth a held-out loss, and scoring it would cost a larger shape minutes.
    eval_loss = float("nan") if args.random_init else _held_out_loss(trainer.model, recipe, held_out, False)
    return {
        "variant": variant,
        "name": VARIANTS[variant] + (f" {' '.join(overrides)}" if overrides else ""),
        "steps": result.global_step,
        **meter.rates(),
        "peak_rss_mb": round(peak_mb),
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(eval_loss, 4),
        "threads": torch.get_num_threads(),
        **share,
        **gpu,
    }


def _held_out_loss(trained: Any, recipe: Any, rows: Any, random_init: bool) -> float:
    """Mean loss per trained token of the held-out rows, with the trained adapter on the fp32 base, in fp32.

    Every variant is scored the same way, so the figure compares what was learnt, not how each trainer
    evaluates (TRL's evaluate runs under its bf16 autocast; ours would run on bf16 weights)."""
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from pipeline.evaluation.perplexity import perplexity

    fp32 = recipe.model_copy(update={"model": recipe.model.model_copy(update={"dtype": "float32"})})
    model = get_peft_model(_model(fp32, random_init), trained.peft_config["default"])
    set_peft_model_state_dict(model, get_peft_model_state_dict(trained))
    return perplexity(model, rows, all_tokens=False)["nll"]  # token-weighted, as the training loss


def _roofline_figures(
    trainer: Any, recipe: Any, dataset: Any, tokens_per_s: float, variant: str
) -> dict[str, Any]:
    """FLOPs per real token, achieved GFLOP/s and their share of this machine's roofline at the step's GEMM
    shapes (pipeline.train.throughput; the LM head counts on trained positions only for ours, which skips
    the rest, and on every position for TRL's)."""
    from pipeline.train.roofline import roofline
    from pipeline.train.throughput import compute_dtype, data_shape, flops_per_token, step_gemms

    shape = data_shape(dataset, recipe.train)
    if shape is None:
        return {}
    head_share = shape.trained_share if variant in ("c", "d") and recipe.train.score_trained_only else 1.0
    model = trainer.model
    per_token = flops_per_token(model, shape, head_share)
    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    line = roofline(step_gemms(model, shape, head_share), compute_dtype(model, trainer.args), device)
    return {
        "gflop_per_token": round(per_token / 1e9, 4),
        "achieved_gflops": round(per_token * tokens_per_s / 1e9, 1),
        "roofline_gflops": round(line.flops_per_second / 1e9, 1),
        "roofline_share": round(per_token * tokens_per_s / line.flops_per_second, 3),
    }


def _shape(args: argparse.Namespace, variant: str) -> list[str]:
    """Recipe overrides: the model folder, and the weight dtype (--dtype; else TRL's float32 for the plain
    script, whose documented default it is, and the recipe's own for ours)."""
    dtype = args.dtype or ("float32" if variant in ("a", "b") else None)
    data = [f"data.train={args.data}"] if args.data else []
    return (
        data
        + ([f"model.name={args.model}"] if args.model else [])
        + ([f"model.dtype={dtype}"] if dtype else [])
    )


def _gpu_figures(parameters: int, tokens_per_s: float, peak_tflops: float) -> dict[str, Any]:
    """Peak GPU memory and model FLOPs utilisation (4 FLOPs per parameter and token: a LoRA step computes no
    base-weight gradients), on CUDA only."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        "mfu": round(4 * parameters * tokens_per_s / (peak_tflops * 1e12), 4),
        "parameters": parameters,
    }


def _child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--variant",
        variant,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
    ]
    command += ["--output", str(args.output), "--max-length", str(args.max_length)]
    command += [f"--set={item}" for item in args.set] + [f"--lever={item}" for item in args.lever]
    command += ["--data", str(args.data)] if args.data else []
    command += (["--dtype", args.dtype] if args.dtype else []) + ["--peak-tflops", str(args.peak_tflops)]
    command += (["--model", args.model] if args.model else []) + (
        ["--random-init"] if args.random_init else []
    )
    child = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    if child.returncode != 0:
        sys.exit(f"variant {variant} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _summary(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median ratios, peaks, held-out losses and the issue's targets (only when a, b and c all ran)."""
    median = {
        v: statistics.median(r["real_tokens_per_s"] for r in rows) for v, rows in results.items() if rows
    }
    # On a GPU the memory that runs out is the GPU's: compare its peak, not the process's RSS.
    key = (
        "peak_gpu_mb" if any("peak_gpu_mb" in r for rows in results.values() for r in rows) else "peak_rss_mb"
    )
    peak = {v: max(r[key] for r in rows) for v, rows in results.items() if rows}
    eval_loss = {v: statistics.median(r["eval_loss"] for r in rows) for v, rows in results.items() if rows}
    shares = {
        v: statistics.median(r["roofline_share"] for r in rows)
        for v, rows in results.items()
        if rows and all("roofline_share" in r for r in rows)
    }
    summary: dict[str, Any] = {
        "median_real_tokens_per_s": median,
        "median_roofline_share": shares,
        key: peak,
        "eval_loss": eval_loss,
    }
    if "c" in median and "d" in median:
        summary["ours_over_lever_changed"] = round(median["c"] / median["d"], 3)
    if {"a", "b", "c"} <= set(median):
        ratios = {
            "ours_over_plain": median["c"] / median["a"],
            "ours_over_padding_free": median["c"] / median["b"],
        }
        summary = {k: round(v, 2) for k, v in ratios.items()} | summary
        summary["targets_met"] = {
            "speed_3x_plain": ratios["ours_over_plain"] >= 3.0,
            "speed_1.2x_padding_free": ratios["ours_over_padding_free"] >= 1.2,
            "eval_loss_not_higher": eval_loss["c"]
            <= min(eval_loss["a"], eval_loss["b"]) + EVAL_LOSS_TOLERANCE,
            "peak_memory_not_higher": peak["c"] <= min(peak["a"], peak["b"]),
        }
    summary["load_average_1min"] = round(os.getloadavg()[0], 2)
    return summary


def main() -> None:
    """Alternate the variants (a b c a b c ...) in fresh processes and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=8, help="optimizer steps per run; the first is not timed"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512, help="train.max_length of every variant")
    parser.add_argument("--data", type=Path, help="training JSONL for every variant (default: lora-small's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 steps, 1 round")
    parser.add_argument("--variants", default="abc", help="which variants to run, e.g. 'c', 'bc' or 'cd'")
    parser.add_argument(
        "--set", action="append", default=[], help="recipe override for ours, e.g. train.padding_free=true"
    )
    parser.add_argument(
        "--lever",
        action="append",
        default=[],
        help="override for variant d only, e.g. train.padding_free=false",
    )
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--model", help="model folder for every variant (default: lora-small's SmolLM2-135M)")
    parser.add_argument(
        "--random-init", action="store_true", help="build the weights from --model's config.json"
    )
    parser.add_argument(
        "--dtype", choices=["float32", "bfloat16"], help="weights of every variant (default: see _shape)"
    )
    parser.add_argument(
        "--peak-tflops", type=float, default=989.0, help="GPU peak for MFU (H100 SXM bf16: 989)"
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 3, 1
    _MAX_LENGTH[0] = args.max_length
    if args.variant:  # child process: one measurement, printed as JSON
        print(json.dumps(run_variant(args.variant, args)))
        return
    machine = platform.processor() or platform.machine()
    print(
        f"# {machine}, {os.cpu_count()} cores, python {platform.python_version()}, load {os.getloadavg()[0]:.2f}"
    )
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS if v in args.variants}
    for round_index in range(args.rounds):
        for variant in results:
            row = _child(variant, args)
            results[variant].append(row)
            print(
                f"round {round_index + 1} ({variant}) {row['name']:<24} real tok/s {row['real_tokens_per_s']:>7}  "
                f"trained tok/s {row['trained_tokens_per_s']:>7}  padding {row['padding_share']:>5.0%}  "
                f"peak {row['peak_rss_mb']:>6} MB  train loss {row['train_loss']}  held-out loss {row['eval_loss']}"
                + (f"  roofline share {row['roofline_share']:.2f}" if "roofline_share" in row else "")
                + (f"  GPU peak {row['peak_gpu_mb']} MB  MFU {row['mfu']:.1%}" if "mfu" in row else ""),
                flush=True,
            )
    print(json.dumps(_summary(results)))


if __name__ == "__main__":
    main()
