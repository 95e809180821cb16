"""What the stage benchmarks (dpo_speed, reward_speed, grpo_speed) share: the step clock, the recipe
overrides, the command line and running each variant (plain TRL, ours) in its own process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("trl", "ours")


class StepClock:
    """A transformers callback that records the wall time at the end of every optimizer step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        clock = self

        class _Callback(TrainerCallback):
            def on_step_end(self, *_: Any, **__: Any) -> None:
                clock.ends.append(time.perf_counter())

            def on_train_begin(self, *_: Any, **__: Any) -> None:
                clock.ends.append(time.perf_counter())

        self.ends: list[float] = []
        self.callback = _Callback()

    def step_seconds(self) -> list[float]:
        """Seconds of each step after the first (the first pays one-time costs)."""
        return [b - a for a, b in zip(self.ends[1:], self.ends[2:], strict=False)]


def overrides(args: argparse.Namespace, output: str) -> list[str]:
    """The recipe overrides both variants train with: steps, batch, no checkpoints or trackers, the data cut
    to the examples the steps read."""
    return [
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch}",
        "train.save_steps=100000",
        "train.logging_steps=1",
        "train.report_to=[none]",
        f"train.output_dir={output}",
        f"data.max_examples={args.steps * args.batch}",
        *args.set,
    ]


def torch_seed(seed: int) -> None:
    """Seed torch as load_model does before LoRA initialisation."""
    import torch

    torch.manual_seed(seed)


def parse(doc: str, steps: int, batch: int, eval_pairs: int | None = 120) -> argparse.Namespace:
    """The benchmarks' command line (--steps, --batch, [--eval-pairs], --threads, --set, --only)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    if eval_pairs is not None:
        parser.add_argument("--eval-pairs", type=int, default=eval_pairs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe override for both variants")
    parser.add_argument("--only", choices=VARIANTS, help="run one variant")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    return parser.parse_args()


def run_variants(
    script: str, args: argparse.Namespace, run_variant: Callable[[str, argparse.Namespace], dict[str, Any]]
) -> dict[str, dict[str, Any]] | None:
    """In a variant's own process (--variant): measure it and print its RESULT line, return None. Otherwise run
    each variant as `script --variant NAME ...` one after the other and return their results (None with
    --only, after printing it)."""
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args)), flush=True)
        return None
    results = {}
    for variant in [args.only] if args.only else VARIANTS:
        command = [sys.executable, script, "--variant", variant, *sys.argv[1:]]
        out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{variant} failed:\n{out.stderr[-3000:]}")
        results[variant] = json.loads(line.removeprefix("RESULT "))
        print(json.dumps(results[variant]), flush=True)
    return None if args.only else results


def plain_arguments(recipe: Any, output: str) -> dict[str, Any]:
    """The TrainingArguments a plain TRL script sets from the recipe (trl's defaults for everything else)."""
    return {
        "output_dir": output,
        "per_device_train_batch_size": recipe.train.batch_size,
        "learning_rate": recipe.train.learning_rate,
        "lr_scheduler_type": recipe.train.lr_scheduler,
        "warmup_steps": 0,
        "max_steps": recipe.train.max_steps,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": recipe.train.seed,
        "data_seed": recipe.train.seed,
    }


def plain_lora(recipe: Any, task_type: str = "CAUSAL_LM") -> Any:
    """The LoraConfig a plain TRL script writes: the recipe's rank and alpha on all linear layers."""
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.adapter.r, lora_alpha=recipe.adapter.alpha, target_modules="all-linear", task_type=task_type
    )


def print_speed(trl: dict[str, Any], ours: dict[str, Any], heading: str) -> float:
    """The comparison table's heading and step-time row; returns the ratio plain TRL / ours."""
    ratio = trl["median_step_s"] / ours["median_step_s"]
    print(f"\n{heading}")
    print("| | (a) plain TRL | (b) ours | ratio |")
    print("|---|---|---|---|")
    print(
        f"| median step (s) | {trl['median_step_s']:.2f} | {ours['median_step_s']:.2f} | **{ratio:.2f}x** |"
    )
    return ratio
