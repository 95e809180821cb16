"""train.stage: rloo on the tiny model (trl's RLOOTrainer with GRPO's rewards), and the flat-reward warning that
GRPO and RLOO runs share."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl
from test_grpo import scored_greedy_answers

from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune

PROMPTS = [{"prompt": f"What is {a} times {b}?", "answer": str(a * b)} for a in range(4) for b in range(3)]
WARNING_LOGGER = "pipeline.train.reward_spread"


def _recipe(make_recipe: Any, tmp_path: Path, stage: str, rewards: list[dict[str, Any]], steps: int) -> Path:
    train = write_jsonl(tmp_path / "prompts" / "train.jsonl", PROMPTS)
    held_out = write_jsonl(tmp_path / "prompts" / "eval.jsonl", PROMPTS[:3])
    return make_recipe(
        name=stage,
        data={"train": str(train), "eval": str(held_out), "allow_contamination": True},
        train={"stage": stage, "batch_size": 4, "max_steps": steps, "logging_steps": 1},
        **{stage: {"num_generations": 2, "max_completion_length": 8, "rewards": rewards}},
        eval={"generate_examples": 3},
    )


def _zero_spread_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == WARNING_LOGGER]


def test_rloo_trains_on_varying_rewards_and_scores_greedy_answers(
    make_recipe: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rewards = [
        {"function": "length", "target_chars": 12},  # varies with every sampled length: non-zero advantages
        {"function": "exact_match", "weight": 2.0},
    ]
    with caplog.at_level(logging.WARNING, logger=WARNING_LOGGER):
        run = finetune(load_recipe(str(_recipe(make_recipe, tmp_path, "rloo", rewards, steps=3))))
    assert run.metrics["train"]["steps"] == 3
    steps = [entry for entry in run.metrics["train"]["log_history"] if "loss" in entry]
    assert len(steps) == 3  # every step logs its rewards and the share of flat groups
    for entry in steps:
        assert {"rewards/length/mean", "rewards/exact_match/mean", "frac_reward_zero_std"} <= set(entry)
    assert any(entry["frac_reward_zero_std"] < 1.0 for entry in steps)
    assert _zero_spread_warnings(caplog) == []
    for row in scored_greedy_answers(run.run_dir, 3):  # the reward is the weighted sum of the two functions
        answer = row["adapted_answer"]
        expected = max(0.0, 1 - abs(len(answer) - 12) / 12)
        expected += 2.0 * (answer.strip().rstrip(".").casefold() == row["reference"])
        assert row["adapted_reward"] == pytest.approx(expected)
    assert "trained with RLOO on prompts with reward functions" in (run.run_dir / "README.md").read_text()


def test_a_reward_that_never_varies_warns_once(
    make_recipe: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    never = [{"function": "regex", "pattern": r"\A\Z never matches"}]  # every answer scores 0: flat groups
    recipe = load_recipe(str(_recipe(make_recipe, tmp_path, "grpo", never, steps=4)), ["eval.enabled=false"])
    with caplog.at_level(logging.WARNING, logger=WARNING_LOGGER):
        run = finetune(recipe)
    steps = [entry for entry in run.metrics["train"]["log_history"] if "loss" in entry]
    assert [entry["frac_reward_zero_std"] for entry in steps] == [1.0] * 4
    (warning,) = _zero_spread_warnings(caplog)
    assert "at least 100% of prompt groups" in warning and "grpo.num_generations" in warning
