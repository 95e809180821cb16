"""GRPO's and RLOO's rollouts recorded as they are scored: a trainer mixin that wraps the reward functions
for the length of training and writes each generation round to the run's rollouts.jsonl (pipeline.runs.rollouts).

trl calls every reward function once per round with the round's prompts and completions (each prompt repeated
for its group, in order) and the trainer state; the last function's call completes the round.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.ranks import is_main_process
from pipeline.runs.rollouts import append_round, group_rollouts
from pipeline.train.rewards import completion_text


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):  # conversational: the last user turn
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        return str((users or prompt)[-1].get("content") or "")
    return str(prompt)


class RolloutRecorder:
    """Collects one round's rewards function by function and writes the round when the last has reported."""

    def __init__(self, folder: Path, names: list[str], weights: list[float]) -> None:
        self.folder, self.names, self.weights = folder, names, weights
        self._values: dict[str, list[float]] = {}

    def wrap(self, index: int, function: Callable[..., list[float]]) -> Callable[..., list[float]]:
        """The reward function, recording what it returns (trl still logs it under its own name)."""

        def recorded(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
            values = function(prompts=prompts, completions=completions, **kwargs)
            self._values[self.names[index]] = [float("nan") if v is None else float(v) for v in values]
            if index == len(self.names) - 1:
                state = kwargs.get("trainer_state")
                groups = group_rollouts(
                    [_prompt_text(p) for p in prompts],
                    [completion_text(c) for c in completions],
                    self._values,
                    self.weights,
                )
                append_round(self.folder, int(getattr(state, "global_step", 0)), groups)
                self._values = {}
            return values

        recorded.__name__ = getattr(function, "__name__", self.names[index])
        return recorded


class RecordedRollouts:
    """Trainer mixin of GRPO and RLOO: every generation round's groups and rewards go to rollouts.jsonl."""

    args: Any
    reward_funcs: list[Any]
    reward_func_names: list[str]

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """trl's train with the reward functions recorded (main process only); the functions are back after."""
        original = list(self.reward_funcs)
        if is_main_process() and all(callable(f) and not hasattr(f, "parameters") for f in original):
            weights = list(self.args.reward_weights or [1.0] * len(original))
            folder = Path(self.args.output_dir).parent  # train.arguments: checkpoints/ inside the run folder
            recorder = RolloutRecorder(folder, list(self.reward_func_names), weights)
            self.reward_funcs = [recorder.wrap(i, f) for i, f in enumerate(original)]
        try:
            return super().train(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.reward_funcs = original
