"""Benchmark scoring speed: our lm-eval run (log-likelihoods through the packed, per-example-attention path)
vs lm-eval's own Hugging Face wrapper (HFLM), same task, model, requests and batch size, in one invocation.

Both run `lm_eval.simple_evaluate` on a shipped multiple-choice task (default offline_mmlu, every question)
with the packaged SmolLM2-135M-Instruct held in memory. Every per-request log-likelihood of the two runs is
compared (the largest relative difference is printed; the check is 1e-4) and so is the task's accuracy. Runs
alternate (HFLM, ours, HFLM, ours, ...) so that load from other processes hits both alike; the best time of
each counts. fp32 weights by default: the per-example check needs them (bf16 rounds differently in a padded
batch than in a packed row). The last line is JSON.

    .venv/bin/python bench/benchmark_speed.py [--task offline_mmlu] [--limit N] [--rounds 2] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(model: Any, tokenizer: Any, task: str, limit: int | None, batch_size: int, packed: bool) -> Any:
    """(seconds, accuracy, per-request log-likelihoods in request order) of one lm-eval run."""
    from lm_eval import simple_evaluate

    from pipeline.evaluation.benchmarks import load_tasks, offline_hub
    from pipeline.evaluation.harness import harness_lm, quiet_harness

    tasks = list(load_tasks([task])["tasks"].values())
    with quiet_harness(), offline_hub():
        lm = harness_lm(model, tokenizer, batch_size, packed=packed)
        started = time.perf_counter()
        out = simple_evaluate(
            model=lm, tasks=tasks, limit=limit, bootstrap_iters=0, log_samples=True, random_seed=None
        )
        seconds = time.perf_counter() - started
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    values = [float(resp[0][0]) for s in samples for resp in s["resps"]]
    return seconds, out["results"][task]["acc,none"], values


def main() -> None:
    """Time both wrappers in alternating rounds; print times, the ratio and the largest difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="offline_mmlu", help="a shipped multiple-choice task")
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0 = all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best time counts")
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass, both sides")
    parser.add_argument("--dtype", default="float32", help="weights: float32 or bfloat16")
    args = parser.parse_args()

    import torch

    from pipeline.config.schema import ModelSpec
    from pipeline.models.loading import load_base_model, load_tokenizer

    spec = ModelSpec(name="HuggingFaceTB/SmolLM2-135M-Instruct", dtype=args.dtype)
    tokenizer = load_tokenizer(spec)
    model = load_base_model(spec).eval()
    limit = args.limit or None
    theirs_times, ours_times = [], []
    theirs = ours = (0.0, 0.0, [])
    for round_index in range(args.rounds):
        theirs = run(model, tokenizer, args.task, limit, args.batch_size, packed=False)
        ours = run(model, tokenizer, args.task, limit, args.batch_size, packed=True)
        theirs_times.append(theirs[0])
        ours_times.append(ours[0])
        print(f"round {round_index + 1}: lm-eval HFLM {theirs[0]:.1f} s, ours {ours[0]:.1f} s", flush=True)
    theirs_s, ours_s = min(theirs_times), min(ours_times)
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours[2], theirs[2], strict=True))
    print(
        f"{args.task}: {len(ours[2])} log-likelihood requests, {args.dtype} weights, "
        f"{torch.get_num_threads()} threads, batch size {args.batch_size}"
    )
    print(f"lm-eval HFLM: {theirs_s:.2f} s, acc {theirs[1]:.4f}")
    print(f"ours (packed): {ours_s:.2f} s, acc {ours[1]:.4f}")
    print(
        f"speed-up {theirs_s / ours_s:.2f}x; largest per-request relative difference {worst:.2e} "
        f"({'within' if worst <= 1e-4 else 'OVER'} 1e-4)"
    )
    print(
        json.dumps(
            {
                "benchmark": "benchmark_speed",
                "task": args.task,
                "requests": len(ours[2]),
                "dtype": args.dtype,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "hflm_seconds": round(theirs_s, 3),
                "ours_seconds": round(ours_s, 3),
                "speedup": round(theirs_s / ours_s, 3),
                "acc_hflm": theirs[1],
                "acc_ours": ours[1],
                "max_relative_difference": worst,
            }
        )
    )


if __name__ == "__main__":
    main()
