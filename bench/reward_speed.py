"""Reward-model training speed: a plain TRL RewardTrainer script vs this project's reward stage, same pairs.

(a) plain TRL: the script TRL's docs show: SmolLM2-135M loaded as saved (fp32) by
AutoModelForSequenceClassification (num_labels=1), RewardConfig defaults (bf16 autocast, gradient
checkpointing), LoRA r=16 on all linear layers (peft task type SEQ_CLS: the score head trained in full).
(b) ours: the reward-small recipe through pipeline.train (prepare_inputs, load_model, train_model): dtype and
precision native, no recomputation, the pipeline's CPU levers (LoRA updates in one multiply, freed memory kept).
Both train on the same first N pairs of recipes/data/pydoc-pairs in the same order with the same learning
rate, batch and max_length, each in its own process, one after the other. Prints the median step time of each
(steps after the first), the ratio, and the held-out pairwise accuracy of each trained reward model (the share
of eval pairs whose chosen answer scores higher), scored the same way for both.

    .venv/bin/python bench/reward_speed.py [--steps 30] [--batch 4] [--eval-pairs 120]
"""

from __future__ import annotations

import argparse
import json
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

RECIPE = "reward-small"


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant and score the held-out pairs before and after; returns its measurements."""
    import torch

    from pipeline.config.loader import load_recipe
    from pipeline.data.splits import load_splits
    from pipeline.evaluation.preference import prepare_pairs
    from pipeline.evaluation.reward_model import evaluate_reward_model
    from pipeline.train.inputs import load_model, prepare_inputs

    torch.set_num_threads(args.threads)
    output = tempfile.mkdtemp(prefix=f"reward-speed-{variant}-")
    recipe = load_recipe(RECIPE, overrides(args, output))
    inputs = prepare_inputs(recipe)
    records = load_splits(recipe.data).eval
    pairs = prepare_pairs(records, inputs.tokenizer, args.eval_pairs, recipe.train.max_length)
    pad = inputs.tokenizer.pad_token_id
    clock = StepClock()
    if variant == "ours":
        from pipeline.train.loop import train_model

        model = load_model(recipe)
        trained = train_model(
            recipe, Path(output) / "run", model, inputs.tokenizer, inputs.train, callbacks=[clock.callback]
        )
        scorer = trained.trainer.model
    else:
        scorer = _plain_trl(recipe, inputs, output, clock)
    scores = evaluate_reward_model(scorer, pairs, 16, pad)["reward_model"]
    steps = clock.step_seconds()
    return {
        "variant": variant,
        "steps": len(steps) + 1,
        "median_step_s": statistics.median(steps),
        "mean_step_s": statistics.fmean(steps),
        "accuracy": scores["accuracy"],
        "margin": scores["margin"],
        "pairs": scores["pairs"],
    }


def _plain_trl(recipe: Any, inputs: Any, output: str, clock: StepClock) -> Any:
    """The plain TRL script: from_pretrained, a conversational dataset, LoraConfig, RewardConfig defaults."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from pipeline.models.assets import resolve_model

    torch_seed(recipe.train.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(resolve_model(recipe.model.name)), num_labels=1
    )
    rows = {key: inputs.train[key] for key in ("prompt", "chosen", "rejected")}
    config = RewardConfig(
        **plain_arguments(recipe, output),
        max_length=recipe.train.max_length,
        center_rewards_coefficient=recipe.reward.center_rewards_coefficient if recipe.reward else None,
    )
    peft = plain_lora(recipe, "SEQ_CLS")
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_dict(rows),
        processing_class=inputs.tokenizer,
        peft_config=peft,
        callbacks=[clock.callback],
    )
    trainer.train()
    return trainer.model


def main() -> None:
    """Run (a) plain TRL and (b) ours in turn, each in its own process, and print the comparison."""
    args = parse(__doc__, steps=30, batch=4, eval_pairs=120)
    results = run_variants(__file__, args, run_variant)
    if results is None:
        return
    trl, ours = results["trl"], results["ours"]
    ratio = print_speed(
        trl,
        ours,
        f"{args.steps} steps x {args.batch} pairs, {trl['pairs']} held-out pairs, {args.threads} threads",
    )
    print(f"| held-out pairwise accuracy | {trl['accuracy']:.3f} | {ours['accuracy']:.3f} | |")
    print(f"| held-out margin | {trl['margin']:.3f} | {ours['margin']:.3f} | |")
    equal = abs(trl["accuracy"] - ours["accuracy"]) <= 0.02
    print(json.dumps({"ratio": round(ratio, 3), "target_1_5x": ratio >= 1.5, "accuracy_within_0_02": equal}))


if __name__ == "__main__":
    main()
