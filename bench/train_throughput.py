"""Training throughput: plain TRL vs TRL padding_free vs our lora-small path, alternating in one invocation.

All three train the packaged SmolLM2-135M-Instruct with LoRA r=16, alpha=32 on all linear layers, max_length
512, the same effective batch, the same number of optimizer steps and the same loss mask (the same
pre-tokenized examples with assistant masks). Reported per run: real (non-padding) tokens per second of
training steps, trained (loss) tokens per second, peak RSS and final loss. The last line is JSON with the
median ratios ours/(a) and ours/(b).

    .venv/bin/python bench/train_throughput.py [--steps 8] [--rounds 2] [--batch 8]
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
VARIANTS = {"a": "plain TRL (defaults)", "b": "TRL padding_free=True", "c": "ours (lora-small)"}


def _dataset(steps: int, batch: int) -> tuple[Any, Any, Any, Any]:
    """The same pre-tokenized train and held-out rows for every variant, and the recipe they come from."""
    from pipeline.data import load_splits, tokenize_records
    from pipeline.modeling import load_tokenizer
    from pipeline.recipe import load_recipe

    recipe = load_recipe(
        "lora-small",
        [
            "train.max_length=512",
            f"train.batch_size={batch}",
            f"train.max_steps={steps}",
            "train.report_to=[none]",
        ],
    )
    tokenizer = load_tokenizer(recipe.model)
    splits = load_splits(recipe)
    train = tokenize_records(splits.train[: steps * batch * 2], tokenizer, recipe)
    return recipe, tokenizer, train, tokenize_records(splits.eval[:32], tokenizer, recipe)


class _TokenCounter:
    """Counts real and trained tokens of every batch the trainer feeds the model."""

    def __init__(self) -> None:
        self.real = 0
        self.trained = 0

    def wrap(self, collator: Any) -> Any:
        def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
            batch = collator(examples)
            self.real += sum(len(e["input_ids"]) for e in examples)
            self.trained += int((batch["labels"][:, 1:] != -100).sum())
            return batch

        return collate


def run_variant(variant: str, steps: int, batch: int, output: Path) -> dict[str, Any]:
    """Train one variant in this process and return its measurements."""
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from pipeline.modeling import load_base_model
    from pipeline.training import build_trainer

    recipe, tokenizer, dataset, held_out = _dataset(steps, batch)
    torch.manual_seed(0)
    model = load_base_model(recipe.model)
    if variant == "c":
        trainer = build_trainer(recipe, output, model, tokenizer, dataset, None)
    else:
        # Written the way TRL's documentation shows it: SFTTrainer + LoraConfig, defaults otherwise.
        # padding_free without packing refuses max_length; the rows are already truncated to 512.
        args = SFTConfig(
            output_dir=str(output),
            max_steps=steps,
            per_device_train_batch_size=batch,
            max_length=None if variant == "b" else 512,
            padding_free=variant == "b",
            report_to="none",
            save_strategy="no",
            seed=42,
            learning_rate=recipe.train.learning_rate,
            disable_tqdm=True,
            use_cpu=not torch.cuda.is_available(),
        )
        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config
        )
    trainer.args.save_strategy = "no"
    counter = _TokenCounter()
    trainer.data_collator = counter.wrap(trainer.data_collator)

    class StepTimer(TrainerCallback):
        seconds = 0.0
        started = 0.0

        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            StepTimer.started = time.perf_counter()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            StepTimer.seconds += time.perf_counter() - StepTimer.started

    trainer.add_callback(StepTimer())
    started = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    eval_loss = trainer.evaluate(
        trainer._prepare_dataset(held_out, tokenizer, trainer.args, False, None, "eval")
    )
    seconds = StepTimer.seconds or wall
    return {
        "variant": variant,
        "name": VARIANTS[variant],
        "steps": result.global_step,
        "seconds": round(seconds, 2),
        "real_tokens_per_s": round(counter.real / seconds, 1),
        "trained_tokens_per_s": round(counter.trained / seconds, 1),
        "peak_rss_mb": round(peak_mb),
        "final_loss": round(result.training_loss, 4),
        "eval_loss": round(eval_loss["eval_loss"], 4),
    }


def main() -> None:
    """Alternate the variants (a b c a b c ...) in fresh processes and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "bench")
    args = parser.parse_args()
    if args.variant:  # child process: one measurement, printed as JSON
        print(json.dumps(run_variant(args.variant, args.steps, args.batch, args.output / args.variant)))
        return
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--output",
                    str(args.output),
                ],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            if child.returncode != 0:
                sys.exit(f"variant {variant} failed:\n{child.stderr[-3000:]}")
            row = json.loads(child.stdout.strip().splitlines()[-1])
            results[variant].append(row)
            print(
                f"round {round_index + 1} ({variant}) {row['name']:<24} real tok/s {row['real_tokens_per_s']:>7}  "
                f"trained tok/s {row['trained_tokens_per_s']:>7}  peak {row['peak_rss_mb']:>6} MB  "
                f"train loss {row['final_loss']}  held-out loss {row['eval_loss']}",
                flush=True,
            )
    median = {v: statistics.median(r["real_tokens_per_s"] for r in rows) for v, rows in results.items()}
    summary = {
        "ours_over_plain": round(median["c"] / median["a"], 2),
        "ours_over_padding_free": round(median["c"] / median["b"], 2),
        "median_real_tokens_per_s": median,
        "peak_rss_mb": {v: max(r["peak_rss_mb"] for r in rows) for v, rows in results.items()},
        "eval_loss": {v: rows[-1]["eval_loss"] for v, rows in results.items()},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
