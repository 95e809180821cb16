"""ORPO vs DPO step time: this project's orpo and dpo stages on the same pairs, model, LoRA and batch.

Both train the packaged SmolLM2-135M-Instruct through pipeline.train (prepare_inputs, load_model,
train_model) from their shipped recipes, orpo-small and dpo-small, which differ only in train.stage and the
stage's section (LoRA r=16 on all linear layers, native dtype and precision, max_length 256, max_prompt_length
128, the bundled pydoc pairs in the same order). Each run takes --warmup optimizer steps, then --steps timed
ones; the rounds alternate (dpo orpo dpo orpo ...), each run in a fresh process. Prints the median step time
of each stage per round, the ORPO/DPO ratio (issue 31's goal: ORPO within 1.2x of DPO) and the CPU; the last
line is JSON.

    .venv/bin/python bench/preference_step.py [--warmup 2] [--steps 6] [--batch 4] [--rounds 2]
    .venv/bin/python bench/preference_step.py --set train.score_trained_only=false   # one lever, both stages
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dpo_speed import StepClock

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("dpo", "orpo")
GOAL = 1.2  # ORPO's step time at most this many times DPO's


def cpu_name() -> str:
    """The CPU model (lscpu), with whether bf16 is native (AMX / AVX512-BF16) on it."""
    model = platform.processor() or "unknown CPU"
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        model = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")
        )
        flags = next(line for line in text.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    native = [name for name in ("amx_bf16", "avx512_bf16") if f" {name}" in flags]
    return f"{model} ({', '.join(native) or 'no native bf16'})"


def run_stage(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one stage for warmup + timed steps; the median and mean of the timed steps' wall time."""
    import torch

    from pipeline.config.loader import load_recipe
    from pipeline.train.inputs import load_model, prepare_inputs
    from pipeline.train.loop import train_model
    from pipeline.train.patches.registry import active_patches

    torch.set_num_threads(args.threads)
    steps = args.warmup + args.steps
    output = tempfile.mkdtemp(prefix=f"preference-step-{stage}-")
    overrides = [
        f"train.max_steps={steps}",
        f"train.batch_size={args.batch}",
        "train.save_steps=100000",
        "train.logging_steps=1",
        "train.report_to=[none]",
        f"train.output_dir={output}",
        f"data.max_examples={steps * args.batch}",
        *args.set,
    ]
    recipe = load_recipe(f"{stage}-small", overrides)
    inputs = prepare_inputs(recipe)
    clock = StepClock()
    trained = train_model(
        recipe,
        Path(output) / "run",
        load_model(recipe),
        inputs.tokenizer,
        inputs.train,
        callbacks=[clock.callback],
    )
    # StepClock drops the first step; drop the rest of the warm-up too.
    timed = clock.step_seconds()[args.warmup - 1 :] if args.warmup else clock.step_seconds()
    losses = [row["loss"] for row in trained.metrics["log_history"] if "loss" in row]
    return {
        "stage": stage,
        "timed_steps": len(timed),
        "median_step_s": statistics.median(timed),
        "mean_step_s": statistics.fmean(timed),
        "last_loss": losses[-1] if losses else None,
        "levers": {k: v for k, v in active_patches().items() if v != "off"},
    }


def main() -> None:
    """Alternate the two stages, each run in its own process, and print the step times and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps before the timed ones (>= 1)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per run")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="a recipe override for both stages")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step pays one-time costs)")
    if args.stage:
        print("RESULT " + json.dumps(run_stage(args.stage, args)), flush=True)
        return
    runs: dict[str, list[dict[str, Any]]] = {stage: [] for stage in STAGES}
    for round_ in range(args.rounds):
        for stage in STAGES:
            command = [sys.executable, __file__, "--stage", stage, *sys.argv[1:]]
            out = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{stage} failed:\n{out.stderr[-3000:]}")
            runs[stage].append(json.loads(line.removeprefix("RESULT ")))
            print(f"round {round_ + 1} {stage}: {json.dumps(runs[stage][-1])}", flush=True)
    ratios = [o["median_step_s"] / d["median_step_s"] for d, o in zip(runs["dpo"], runs["orpo"], strict=True)]
    ratio = statistics.median(ratios)
    print(
        f"\n{cpu_name()}, {args.threads} threads; {args.batch} pairs per step, {args.steps} timed steps after {args.warmup}"
    )
    print("| round | dpo s/step | orpo s/step | orpo / dpo |")
    print("|---|---|---|---|")
    for index, (d, o) in enumerate(zip(runs["dpo"], runs["orpo"], strict=True)):
        print(f"| {index + 1} | {d['median_step_s']:.3f} | {o['median_step_s']:.3f} | {ratios[index]:.2f}x |")
    print(f"ORPO / DPO step time: {ratio:.2f}x (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})")
    summary = {
        "cpu": cpu_name(),
        "ratio": ratio,
        "ratios": ratios,
        "goal_met": ratio <= GOAL,
        "set": args.set,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
