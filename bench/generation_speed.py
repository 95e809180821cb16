"""Adapted generation against the base: the unmerged LoRA adapter, and the adapter merged for decoding (what
evaluation, `generate` and `chat` do now), in tokens/s at a fixed answer length, plus whether greedy answers
stay the same.

The adapter is a trained lora-small run (the newest runs/lora-small-*/, or --run). Every side decodes the
same eval prompts greedily with `min_new_tokens = max_new_tokens` (so short answers do not make one side
look slower per token), at batch 1 and batch 8, alternating sides, best of --rounds. Then each side answers
with normal stopping and the answers of the merged and unmerged adapter are compared. The last line is JSON.

    .venv/bin/python bench/generation_speed.py [--run runs/lora-small-...] [--tokens 48] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent


def _prompts(tokenizer: Any, count: int) -> list[str]:
    """The first eval prompts of lora-small, rendered with the generation prompt."""
    from pipeline.config.loader import load_recipe
    from pipeline.evaluation.command import load_eval_records
    from pipeline.inference.generation import render_prompts

    records = load_eval_records(load_recipe("lora-small").data)[:count]
    return render_prompts(
        tokenizer, [[m for m in r["messages"] if m["role"] != "assistant"] for r in records]
    )


def _decode(model: Any, tokenizer: Any, prompts: list[str], batch: int, tokens: int) -> float:
    """Seconds to decode exactly `tokens` new tokens for every prompt, `batch` prompts per generate call."""
    import torch

    started = time.perf_counter()
    for start in range(0, len(prompts), batch):
        inputs = tokenizer(prompts[start : start + batch], return_tensors="pt", padding=True)
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return time.perf_counter() - started


def main() -> None:
    """Base, unmerged and merged adapter: tokens/s at batch 1 and 8, and the greedy answers compared."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a lora-small run folder (default: the newest)")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    from pipeline.inference.generation import Sampling, generate_text
    from pipeline.models.artifacts import load_target
    from pipeline.models.merged_view import adapter_merged

    runs = sorted((ROOT / "runs").glob("lora-small-*/adapter"), key=os.path.getmtime)
    if args.run is None and not runs:
        sys.exit("no lora-small run under runs/: run `make finetune` first, or pass --run RUN_FOLDER")
    run = args.run or runs[-1].parent
    loaded = load_target(str(run))
    model, tokenizer = loaded.model, loaded.tokenizer
    tokenizer.padding_side = "left"
    prompts = _prompts(tokenizer, args.prompts)
    sides = {
        "base": lambda: model.disable_adapter(),
        "adapter, unmerged": lambda: torch.inference_mode(),
        "adapter, merged": lambda: adapter_merged(model),
    }
    seconds: dict[str, dict[int, float]] = {side: {} for side in sides}
    for _ in range(args.rounds):
        for batch in (1, 8):
            for side, context in sides.items():
                with context():
                    elapsed = _decode(model, tokenizer, prompts, batch, args.tokens)
                seconds[side][batch] = min(seconds[side].get(batch, float("inf")), elapsed)
    new_tokens = args.tokens * len(prompts)
    rates = {s: {b: round(new_tokens / t, 1) for b, t in by_batch.items()} for s, by_batch in seconds.items()}
    answers = {}
    for side, batch in (("adapter, unmerged", 8), ("adapter, merged", 8), ("adapter, unmerged", 1)):
        with sides[side]():
            answers[side, batch] = generate_text(
                model, tokenizer, prompts, Sampling(max_new_tokens=64), batch_size=batch
            ).texts

    def agree(a: tuple[str, int], b: tuple[str, int]) -> int:
        return sum(x == y for x, y in zip(answers[a], answers[b], strict=True))

    same = agree(("adapter, unmerged", 8), ("adapter, merged", 8))
    batching = agree(("adapter, unmerged", 8), ("adapter, unmerged", 1))
    print(
        f"{len(prompts)} prompts x {args.tokens} new tokens, {torch.get_num_threads()} threads, run {run.name}"
    )
    print("| | batch 1 tokens/s | vs base | batch 8 tokens/s | vs base |\n|---|---|---|---|---|")
    for side, by_batch in rates.items():
        ratio = {b: by_batch[b] / rates["base"][b] for b in by_batch}
        print(f"| {side} | {by_batch[1]} | {ratio[1]:.2f}x | {by_batch[8]} | {ratio[8]:.2f}x |")
    print(f"greedy answers, merged vs unmerged adapter (batch 8): {same}/{len(prompts)} equal")
    print(
        f"greedy answers, unmerged adapter at batch 1 vs batch 8 (rounding alone): {batching}/{len(prompts)} equal"
    )
    print(json.dumps({"benchmark": "generation_speed", "tokens_per_second": rates, "same_answers": same, "same_across_batch_sizes": batching,
                      "prompts": len(prompts), "load_average_1min": os.getloadavg()[0]}))  # fmt: skip


if __name__ == "__main__":
    main()
