"""DPO training speed: a plain TRL DPOTrainer script vs this project's DPO stage, same pairs, same steps.

(a) plain TRL: the script TRL's docs show, SmolLM2-135M loaded as saved (fp32), DPOConfig defaults (bf16
autocast, gradient checkpointing, trl's LM head), LoRA r=16 on all linear layers. (b) ours: the dpo-small
recipe through pipeline.train (prepare_inputs, load_model, train_model): dtype/precision native, no
recomputation, the LM head scoring only answer positions with the lean CPU kernel. Both train on the same
first N pairs of recipes/data/pydoc-pairs in the same order (seed 42) with the same learning rate, batch,
beta and max_length; each runs in its own process (trl's LM head patch is process-wide), one after the other.
Prints the median step time of each (steps after the first), the ratio, and the held-out reward accuracy of
each adapted model against the base on the eval pairs (scored the same way for both).

    .venv/bin/python bench/dpo_speed.py [--steps 12] [--batch 8] [--eval-pairs 120]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

from stage_bench import (
    StepClock,
    overrides,
    parse,
    plain_arguments,
    plain_lora,
    print_speed,
    run_variants,
    torch_seed,
)

RECIPE = "dpo-small"


def _eval_pairs(recipe: Any, tokenizer: Any, count: int) -> list[dict[str, list[int]]]:
    from pipeline.data.splits import load_splits
    from pipeline.evaluation.preference import prepare_pairs

    records = load_splits(recipe.data).eval
    return prepare_pairs(records, tokenizer, count, recipe.train.max_length)


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant and score the held-out pairs before and after; returns its measurements."""
    import torch

    from pipeline.config.loader import load_recipe
    from pipeline.evaluation.preference import compare_pairs, score_pairs
    from pipeline.train.inputs import load_model, prepare_inputs

    torch.set_num_threads(args.threads)
    output = tempfile.mkdtemp(prefix=f"dpo-speed-{variant}-")
    recipe = load_recipe(RECIPE, overrides(args, output))
    inputs = prepare_inputs(recipe)
    pairs = _eval_pairs(recipe, inputs.tokenizer, args.eval_pairs)
    clock = StepClock()
    if variant == "ours":
        from pipeline.train.loop import train_model

        model = load_model(recipe)
        base = score_pairs(model, pairs, 16, inputs.tokenizer.pad_token_id)
        trained = train_model(
            recipe, Path(output) / "run", model, inputs.tokenizer, inputs.train, callbacks=[clock.callback]
        )
        policy = trained.trainer.model
    else:
        policy, base = _plain_trl(recipe, inputs, pairs, output, clock)
    adapted = score_pairs(policy, pairs, 16, inputs.tokenizer.pad_token_id)
    rewards = compare_pairs(base, adapted) or {}
    steps = clock.step_seconds()
    return {
        "variant": variant,
        "steps": len(steps) + 1,
        "median_step_s": statistics.median(steps),
        "mean_step_s": statistics.fmean(steps),
        "reward_accuracy": rewards.get("reward_accuracy"),
        "accuracy_before": base["accuracy"],
        "accuracy_after": adapted["accuracy"],
        "pairs": len(pairs),
    }


def _plain_trl(recipe: Any, inputs: Any, pairs: list[Any], output: str, clock: StepClock) -> tuple[Any, Any]:
    """The plain TRL script: from_pretrained, a conversational dataset, LoraConfig, DPOConfig defaults."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from pipeline.config.stages import DPOSpec
    from pipeline.evaluation.preference import score_pairs
    from pipeline.models.assets import resolve_model

    torch_seed(recipe.train.seed)
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(recipe.model.name)))
    base = score_pairs(model, pairs, 16, inputs.tokenizer.pad_token_id)
    rows = {key: inputs.train[key] for key in ("prompt", "chosen", "rejected")}
    config = DPOConfig(
        **plain_arguments(recipe, output),
        max_length=recipe.train.max_length,
        beta=recipe.settings_of(DPOSpec).beta,
    )
    peft = plain_lora(recipe)
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(rows),
        processing_class=inputs.tokenizer,
        peft_config=peft,
        callbacks=[clock.callback],
    )
    trainer.train()
    return trainer.model, base


def main() -> None:
    """Run (a) plain TRL and (b) ours in turn, each in its own process, and print the comparison."""
    args = parse(__doc__, steps=12, batch=8)
    results = run_variants(__file__, args, run_variant)
    if results is None:
        return
    trl, ours = results["trl"], results["ours"]
    heading = (
        f"{args.steps} steps x {args.batch} pairs, {trl['pairs']} held-out pairs, {args.threads} threads"
    )
    print_speed(trl, ours, heading)
    print(f"| held-out reward accuracy | {trl['reward_accuracy']:.3f} | {ours['reward_accuracy']:.3f} | |")
    print(
        f"| preference accuracy before -> after | {trl['accuracy_before']:.3f} -> {trl['accuracy_after']:.3f} | "
        f"{ours['accuracy_before']:.3f} -> {ours['accuracy_after']:.3f} | |"
    )


if __name__ == "__main__":
    main()
