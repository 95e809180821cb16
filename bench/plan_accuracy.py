"""`pipeline plan` against reality: estimated vs measured peak memory of short CPU training runs.

Each recipe trains a few steps in its own process (fresh high-water mark); the measured peak is that
process's maximum RSS (ru_maxrss), which includes the Python/torch runtime the plan counts as "runtime".
Examples are truncated to max_length (most pydoc-qa conversations are longer than 64 tokens), so micro-
batches are close to the batch x max_length tokens the plan assumes. On a GPU the same comparison is
against torch.cuda.max_memory_allocated plus the CUDA context.

    .venv/bin/python bench/plan_accuracy.py [--recipes lora-small qlora-small full-small] [--steps 2]

Prints one row per recipe and a final JSON line with the largest |estimate / measured - 1|.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Small enough for a shared 2-core CPU, long enough that activations are a real share of the peak.
OVERRIDES = [
    "train.max_length=64",
    "train.batch_size=8",
    "train.grad_accum=1",
    "train.report_to=[none]",
    "train.save_steps=1000",
    "train.logging_steps=1",
    "eval.enabled=false",
]


def child(recipe_name: str, overrides: list[str]) -> None:
    """Train a few steps and print {"peak_rss": bytes, "runtime_rss": bytes} as JSON."""
    # What every run imports: the plan's "runtime" row.
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import trl  # noqa: F401

    from pipeline.config.loader import load_recipe
    from pipeline.train.inputs import load_model, prepare_inputs
    from pipeline.train.loop import train_model

    runtime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    recipe = load_recipe(recipe_name, overrides)
    inputs = prepare_inputs(recipe)
    train_model(recipe, Path(recipe.train.output_dir), load_model(recipe), inputs.tokenizer, inputs.train)
    lengths = [len(row) for row in inputs.train["input_ids"]]
    print(
        json.dumps(
            {
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "runtime_rss": runtime,
                "full_length_share": sum(n == recipe.train.max_length for n in lengths) / len(lengths),
            }
        )
    )


def measure(recipe_name: str, overrides: list[str]) -> dict[str, float]:
    """Run child() in a fresh process and return its JSON result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, __file__, "--child", recipe_name, *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise SystemExit(f"{recipe_name}: training failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(recipe_name: str, steps: int) -> dict[str, float]:
    """Estimate (pipeline.planning.memory, --cpu) and measured peak for one recipe."""
    from pipeline.config.loader import load_recipe
    from pipeline.planning.memory import GIB, estimate, model_shape

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*OVERRIDES, f"train.max_steps={steps}", f"train.output_dir={tmp}"]
        recipe = load_recipe(recipe_name, overrides)
        planned = estimate(recipe, model_shape(recipe), device="cpu")
        measured = measure(recipe_name, overrides)
    return {
        "recipe": recipe_name,
        "estimate_gib": planned.total / GIB,
        "measured_gib": measured["peak_rss"] / GIB,
        "ratio": planned.total / measured["peak_rss"],
        "runtime_gib": measured["runtime_rss"] / GIB,
        "full_length_share": measured["full_length_share"],
    }


def main() -> None:
    """Compare estimate and measurement for each recipe; print rows and a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["lora-small", "qlora-small", "full-small"])
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    rows = [compare(name, args.steps) for name in args.recipes]
    for row in rows:
        print(
            f"{row['recipe']:<12} estimate {row['estimate_gib']:.2f} GiB  measured {row['measured_gib']:.2f} GiB  "
            f"ratio {row['ratio']:.2f}  (runtime alone {row['runtime_gib']:.2f} GiB)"
        )
    print(json.dumps({"rows": rows, "max_abs_error": max(abs(r["ratio"] - 1) for r in rows)}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3:])
    else:
        main()
