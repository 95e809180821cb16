"""Evaluation speed: our perplexity vs a plain one-example-at-a-time loop that computes the same number.

Both score the default eval split (recipes/data/pydoc-qa/eval.jsonl, every record, tokenized as lora-small
does) with the packaged SmolLM2-135M-Instruct on the trained (assistant) tokens. The plain loop is what one
writes with transformers: one example per forward, `labels` with -100 outside the trained tokens, the
model's own loss times the token count. Ours is `pipeline.evaluation.perplexity.perplexity` exactly as
evaluation calls it (it also computes the all-token perplexity in the same pass). Runs alternate (plain,
ours, plain, ours, ...) so that load from other processes hits both alike; the best time of each counts.
The target is a share of the roofline (FLOP/s of our pass over the rate of its own GEMMs measured here),
reported as training's is: on bf16 weights the model body dominates both sides, so a ratio against the plain
loop cannot say how much faster scoring could get. The last line is JSON.

    .venv/bin/python bench/eval_speed.py [--rounds 2] [--examples N] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def plain_loop(model: Any, rows: list[dict[str, Any]]) -> float:
    """exp(sum NLL / N) over trained tokens, one example per forward pass, with the model's own loss."""
    import torch

    nll, count = 0.0, 0
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = ids.masked_fill(torch.tensor([row["assistant_masks"]]) == 0, -100)
            n = int((labels[0, 1:] != -100).sum())
            if n:
                nll += float(model(input_ids=ids, labels=labels).loss) * n
                count += n
    return math.exp(nll / count)


def scoring_roofline(
    model: Any, rows: list[dict[str, Any]], seconds: float, batch_size: int
) -> dict[str, Any]:
    """FLOPs of our scoring pass (forward only, the LM head on every position as perplexity_all_tokens needs,
    causal attention) per second, and their share of the roofline: the rate of the same forward GEMMs
    measured now on this machine (pipeline.train.roofline), as training's share is measured."""
    import torch

    from pipeline.train.roofline import Gemm, roofline

    lengths = [len(r["input_ids"]) for r in rows]
    tokens = sum(lengths)
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = (
        2 * config.num_hidden_layers * config.num_attention_heads * head_dim * sum(n * n for n in lengths)
    )
    flops = sum(2 * k * n for k, n in linears) * tokens + attention
    per_batch = max(1, round(tokens / max(1, len(rows)) * batch_size))
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    peak = roofline([Gemm(per_batch, k, n) for k, n in linears], dtype, "cpu")
    achieved = flops / seconds
    return {
        "gflops": round(achieved / 1e9, 1),
        "roofline_gflops": round(peak.flops_per_second / 1e9, 1),
        "roofline_source": peak.source,
        "roofline_share": round(achieved / peak.flops_per_second, 3),
    }


def main() -> None:
    """Time both methods in alternating rounds and print times, values and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds; the best time of each counts"
    )
    parser.add_argument("--examples", type=int, default=0, help="use only the first N eval records (0 = all)")
    parser.add_argument("--batch-size", type=int, default=0, help="our batch size (default: the recipe's)")
    args = parser.parse_args()

    import torch

    from pipeline.config.loader import load_recipe
    from pipeline.evaluation.command import load_eval_records
    from pipeline.evaluation.perplexity import perplexity
    from pipeline.evaluation.runner import prepare_eval
    from pipeline.models.loading import load_base_model, load_tokenizer

    recipe = load_recipe("lora-small", ["eval.max_examples=100000"])
    tokenizer = load_tokenizer(recipe.model)
    records = load_eval_records(recipe.data)
    records = records[: args.examples] if args.examples else records
    data = prepare_eval(records, tokenizer, recipe.eval, recipe.train.max_length, recipe.train.loss_on)
    model = load_base_model(recipe.model).eval()
    batch_size = args.batch_size or recipe.eval.batch_size
    lengths = [len(r["input_ids"]) for r in data.rows]
    print(
        f"{len(data.rows)} examples, {sum(lengths)} tokens (mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}), {torch.get_num_threads()} threads, batch size {batch_size}",
        flush=True,
    )

    plain_times, ours_times = [], []
    plain_value = ours_value = float("nan")
    for round_index in range(args.rounds):
        started = time.perf_counter()
        plain_value = plain_loop(model, data.rows)
        plain_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        ours_value = perplexity(model, data.rows, batch_size=batch_size, window=data.window)["perplexity"]
        ours_times.append(time.perf_counter() - started)
        print(
            f"round {round_index + 1}: plain {plain_times[-1]:.1f} s, ours {ours_times[-1]:.1f} s", flush=True
        )

    plain_s, ours_s = min(plain_times), min(ours_times)
    relative = abs(ours_value - plain_value) / plain_value
    print(f"plain one-at-a-time loop: {plain_s:.2f} s, perplexity {plain_value:.6f}")
    print(f"ours (batched, sorted):   {ours_s:.2f} s, perplexity {ours_value:.6f}")
    print(f"speed-up {plain_s / ours_s:.2f}x, relative difference {relative:.2e}")
    share = scoring_roofline(model, data.rows, ours_s, batch_size)
    print(
        f"ours: {share['gflops']:.0f} GFLOP/s = {share['roofline_share']:.2f} of the roofline "
        f"({share['roofline_gflops']:.0f} GFLOP/s, {share['roofline_source']}); training's share: a run's "
        "metrics.json train.roofline_share or bench/roofline.py"
    )
    print(
        json.dumps(
            {
                "benchmark": "eval_speed",
                "examples": len(data.rows),
                "tokens": sum(lengths),
                "batch_size": batch_size,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "plain_seconds": round(plain_s, 3),
                "ours_seconds": round(ours_s, 3),
                "plain_perplexity": plain_value,
                "ours_perplexity": ours_value,
                "relative_difference": relative,
                "speedup": round(plain_s / ours_s, 3),
                **{f"scoring_{key}": value for key, value in share.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
