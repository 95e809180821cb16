"""lora-small against this machine's roofline: matmul throughput at the model's own GEMM shapes (fp32 and
bf16), then lora-small's training steps and their achieved FLOP/s divided by that roofline.

The roofline is the rate at which this machine runs exactly the multiplies of one step, each timed alone
(pipeline.train.roofline; `pipeline finetune` records the same share in metrics.json). --profile adds a
torch-profiler table of where one step's time goes (self CPU time by kind of operation).

    .venv/bin/python bench/roofline.py [--rounds 2] [--steps 8] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Self-CPU time of profiler events grouped by what they are; first matching prefix wins.
KINDS = [
    ("matmul (GEMM)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")),
    ("attention", ("aten::_scaled_dot_product", "aten::scaled_dot_product")),
    ("optimizer", ("Optimizer.step", "aten::_fused_adamw", "aten::_foreach")),
    ("copies and casts", ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous")),
    ("softmax / loss", ("aten::_log_softmax", "aten::log_softmax", "aten::nll_loss", "aten::_softmax")),
    ("elementwise", ("aten::mul", "aten::add", "aten::silu", "aten::rsqrt", "aten::pow", "aten::mean",
                     "aten::neg", "aten::cat", "aten::sub", "aten::div", "aten::sum", "aten::fill_")),
]  # fmt: skip


def _lora_small(steps: int) -> tuple[Any, Any]:
    """lora-small's trainer over its own data (train_throughput's variant c) and the recipe."""
    from train_throughput import _dataset  # type: ignore[import-not-found]

    from pipeline.models.loading import load_base_model
    from pipeline.train.stages.build import build_trainer

    recipe, tokenizer, dataset, _ = _dataset(steps, 8, [], [])
    model = load_base_model(recipe.model)
    trainer = build_trainer(recipe, ROOT / "runs" / "bench" / "roofline", model, tokenizer, dataset, None)
    trainer.args.save_strategy = "no"
    return trainer, recipe


def gemm_table() -> list[dict[str, Any]]:
    """GFLOP/s of each distinct multiply of one lora-small step, in float32 and bfloat16, and the roofline."""
    import torch

    from pipeline.train.roofline import distinct, measure, time_gemm
    from pipeline.train.throughput import data_shape, step_gemms

    trainer, recipe = _lora_small(2)
    model = trainer.model
    shape = data_shape(trainer.train_dataset, recipe.train)
    gemms = step_gemms(model, shape, shape.trained_share)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for g, count in sorted(distinct(gemms).items(), key=lambda item: -item[0].flops * item[1]):
            seconds = time_gemm(g, dtype, "cpu")
            rows.append({"dtype": str(dtype)[6:], "m": g.m, "k": g.k, "n": g.n, "per_step": count,
                         "gflops": round(g.flops / seconds / 1e9, 1),
                         "ms_per_step": round(seconds * count * 1e3, 2)})  # fmt: skip
        rows.append({"dtype": str(dtype)[6:], "roofline_gflops": round(measure(gemms, dtype) / 1e9, 1)})
    return rows


def profile(steps: int) -> dict[str, float]:
    """Self CPU seconds per kind of operation, per step, over the steps after the first (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile, schedule
    from transformers import TrainerCallback

    trainer, _ = _lora_small(steps)
    traces: list[Any] = []
    plan = schedule(wait=1, warmup=0, active=steps - 1, repeat=1)  # step 1 (warm-up) is not recorded
    ready = traces.append  # the profiler hands itself over when the active steps end
    with profile(activities=[ProfilerActivity.CPU], schedule=plan, on_trace_ready=ready) as prof:

        class Step(TrainerCallback):
            def on_step_end(self, *args: Any, **kwargs: Any) -> None:
                prof.step()

        trainer.add_callback(Step())
        trainer.train()
    totals: dict[str, float] = defaultdict(float)
    others: dict[str, float] = {}
    for event in traces[0].key_averages() if traces else []:
        kind = next((k for k, prefixes in KINDS if event.key.startswith(prefixes)), "other")
        seconds = event.self_cpu_time_total / 1e6 / (steps - 1)
        totals[kind] += seconds
        if kind == "other":
            others[f"other: {event.key}"] = seconds
    largest = dict(sorted(others.items(), key=lambda item: -item[1])[:6])
    return dict(sorted(totals.items(), key=lambda item: -item[1])) | largest


def main() -> None:
    """GEMM table, lora-small's share (train_throughput variant c, fresh processes), optional profile."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--variants", default="c", help="train_throughput variants to hold against it too")
    parser.add_argument("--profile", action="store_true", help="add the per-kind time table of a step")
    parser.add_argument("--part", choices=["gemms", "profile"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # child process
        print(json.dumps(gemm_table() if args.part == "gemms" else profile(args.steps)))
        return
    import torch

    def child(script: str, *extra: str) -> Any:
        run = subprocess.run([sys.executable, script, *extra], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            sys.exit(run.stderr[-3000:])
        return run.stdout.strip().splitlines()

    print(f"# {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    table = json.loads(child(__file__, "--part", "gemms")[-1])
    print("\n| dtype | M x K x N | per step | GFLOP/s | ms per step |\n|---|---|---|---|---|")
    for row in table:
        if "roofline_gflops" in row:
            print(
                f"| {row['dtype']} | **roofline (all of a step's GEMMs)** | | **{row['roofline_gflops']}** | |"
            )
        elif row["ms_per_step"] >= 1:
            print(f"| {row['dtype']} | {row['m']} x {row['k']} x {row['n']} | {row['per_step']} | "
                  f"{row['gflops']} | {row['ms_per_step']} |")  # fmt: skip
    lines = child(
        str(ROOT / "bench" / "train_throughput.py"), "--variants", args.variants,
        "--rounds", str(args.rounds), "--steps", str(args.steps),
    )  # fmt: skip
    print()
    print("\n".join(line for line in lines if line.startswith("round")))
    summary = json.loads(lines[-1])
    result: dict[str, Any] = {"benchmark": "roofline", "gemms": table, "throughput": summary}
    if args.profile:
        kinds = json.loads(child(__file__, "--part", "profile", "--steps", str(args.steps))[-1])
        total = sum(v for k, v in kinds.items() if not k.startswith("other: "))
        print("\n| where a step's time goes (self CPU) | seconds per step | share |\n|---|---|---|")
        for kind, seconds in kinds.items():
            print(f"| {kind} | {seconds:.3f} | {seconds / total:.0%} |")
        result["profile_seconds_per_step"] = kinds
    print(json.dumps(result))


if __name__ == "__main__":
    main()
