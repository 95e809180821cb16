"""GRPO training speed: a plain TRL GRPOTrainer script vs this project's GRPO stage, same prompts and rewards.

(a) plain TRL: the script TRL's docs show: SmolLM2-135M loaded as saved (fp32), GRPOConfig defaults (bf16
autocast, gradient checkpointing), LoRA r=16 on all linear layers, the grpo-small recipe's reward functions,
group size, completion length, temperature, batch, learning rate and steps. (b) ours: grpo-small through
pipeline.train (prepare_inputs, load_model, train_model): dtype and precision native, no recomputation,
rollouts through the merged adapter. Each in its own process, one after the other. Prints the median step time
of each (steps after the first: a step = one generation round + its update), the ratio, trl's logged mean
training reward over the run, and the mean reward of greedy answers to 75 prompts neither trained on (the
eval split and the training file's last 64), scored the same way for both.

    .venv/bin/python bench/grpo_speed.py [--steps 12] [--batch 8]
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

RECIPE = "grpo-small"
# The training file's last prompts: a run of --steps x --batch / num_generations never reaches them.
HELD_OUT = 64


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant and score greedy answers to the held-out prompts; returns its measurements."""
    import torch

    from pipeline.config.loader import load_recipe
    from pipeline.train.inputs import load_model, prepare_inputs
    from pipeline.train.stages.grpo import reward_functions

    torch.set_num_threads(args.threads)
    output = tempfile.mkdtemp(prefix=f"grpo-speed-{variant}-")
    recipe = load_recipe(RECIPE, overrides(args, output))
    inputs = prepare_inputs(recipe)
    functions, weights = reward_functions(recipe)
    clock = StepClock()
    if variant == "ours":
        from pipeline.train.loop import train_model

        model = load_model(recipe)
        before = _greedy_reward(model, inputs, recipe, functions, weights)
        trained = train_model(
            recipe, Path(output) / "run", model, inputs.tokenizer, inputs.train, callbacks=[clock.callback]
        )
        policy, history = trained.trainer.model, trained.metrics["log_history"]
    else:
        policy, history, before = _plain_trl(recipe, inputs, functions, weights, output, clock)
    steps = clock.step_seconds()
    train_rewards = [row["reward"] for row in history if "reward" in row]
    return {
        "variant": variant,
        "steps": len(steps) + 1,
        "median_step_s": statistics.median(steps),
        "mean_step_s": statistics.fmean(steps),
        "train_reward": statistics.fmean(train_rewards) if train_rewards else None,
        "held_out_reward_before": before,
        "held_out_reward": _greedy_reward(policy, inputs, recipe, functions, weights),
    }


def _greedy_reward(
    policy: Any, inputs: Any, recipe: Any, functions: list[Any], weights: list[float]
) -> float:
    """Mean reward of the greedy answers to HELD_OUT prompts neither variant trained on (the eval split's and
    the training file's last ones), scored as the run's evaluation scores them."""
    from pipeline.config.loader import load_recipe
    from pipeline.data.formatting import prompt_messages
    from pipeline.data.splits import load_splits
    from pipeline.inference.generation import Sampling, generate
    from pipeline.train.rewards import score

    splits = load_splits(load_recipe(RECIPE).data)  # every record, not the run's data.max_examples
    records = [r for r in [*splits.eval, *splits.train[-HELD_OUT:]] if "messages" in r]
    prompts, references = zip(*(prompt_messages(r["messages"]) for r in records), strict=True)
    sampling = Sampling(max_new_tokens=recipe.eval.max_new_tokens)
    answers = generate(policy, inputs.tokenizer, list(prompts), sampling, batch_size=16).texts
    rewards = score(functions, weights, list(prompts), answers, list(references))
    return sum(rewards) / len(rewards)


def _plain_trl(
    recipe: Any, inputs: Any, functions: list[Any], weights: list[float], output: str, clock: StepClock
) -> tuple[Any, list[dict[str, Any]], float]:
    """The plain TRL script: from_pretrained, a conversational prompt dataset, LoraConfig, GRPOConfig defaults;
    returns the trained model, trl's log and the base's greedy reward."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from pipeline.config.stages import GRPOSpec
    from pipeline.models.assets import resolve_model

    grpo = recipe.settings_of(GRPOSpec)
    torch_seed(recipe.train.seed)
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model(recipe.model.name)))
    before = _greedy_reward(model, inputs, recipe, functions, weights)
    config = GRPOConfig(
        **plain_arguments(recipe, output),
        num_generations=grpo.num_generations,
        max_completion_length=grpo.max_completion_length,
        temperature=grpo.temperature,
        beta=grpo.beta,
        reward_weights=weights,
    )
    peft = plain_lora(recipe)
    trainer = GRPOTrainer(
        model=model,
        args=config,
        reward_funcs=functions,
        train_dataset=Dataset.from_dict({key: inputs.train[key] for key in ("prompt", "answer")}),
        processing_class=inputs.tokenizer,
        peft_config=peft,
        callbacks=[clock.callback],
    )
    trainer.train()
    return trainer.model, trainer.state.log_history, before


def main() -> None:
    """Run (a) plain TRL and (b) ours in turn, each in its own process, and print the comparison."""
    args = parse(__doc__, steps=12, batch=8, eval_pairs=None)
    results = run_variants(__file__, args, run_variant)
    if results is None:
        return
    trl, ours = results["trl"], results["ours"]
    ratio = print_speed(trl, ours, f"{args.steps} steps x {args.batch} completions, {args.threads} threads")
    print(f"| mean training reward (trl's log) | {trl['train_reward']:.3f} | {ours['train_reward']:.3f} | |")
    for key, name in (("held_out_reward_before", "before"), ("held_out_reward", "after")):
        print(f"| unseen prompts' greedy reward {name} | {trl[key]:.3f} | {ours[key]:.3f} | |")
    print(json.dumps({"ratio": round(ratio, 3), "target_1_5x": ratio >= 1.5}))


if __name__ == "__main__":
    main()
