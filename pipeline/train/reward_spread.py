"""One warning when a sampling stage's rewards do not vary within the prompt groups (GRPO, RLOO).

trl's GRPOTrainer and RLOOTrainer log, every step, the share of prompt groups whose completions all got the same
reward (`frac_reward_zero_std`). Such a group has no advantage, so it teaches nothing: when nearly every group is
flat from the start (a reward that never, or always, fires), the run spends its steps without learning. The
callback reads trl's key (it does not recompute it) and warns once, early, instead of letting the run finish
silently.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

from pipeline.config.schema import Recipe

log = logging.getLogger(__name__)

# The key trl logs the share under (GRPOTrainer and RLOOTrainer, train and, prefixed "eval_", evaluation).
ZERO_SPREAD_KEY = "frac_reward_zero_std"
# Warn when the share stays above THRESHOLD in each of the first STEPS logged training steps.
THRESHOLD = 0.9
STEPS = 3


class RewardSpreadWarning(TrainerCallback):
    """Logs one warning when the share of flat prompt groups stays above THRESHOLD over the first STEPS logged
    training steps (or over all of them, for a run that logs fewer)."""

    def __init__(self, section: str, steps: int = STEPS, threshold: float = THRESHOLD) -> None:
        self.section = section  # the recipe section the fixes are in (grpo, rloo)
        self.steps = steps
        self.threshold = threshold
        self.shares: list[float] = []
        self.decided = False

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any
    ) -> None:
        """Collect trl's share of flat groups from each training log; decide after the first STEPS."""
        if self.decided or not logs or ZERO_SPREAD_KEY not in logs:
            return
        self.shares.append(float(logs[ZERO_SPREAD_KEY]))
        if len(self.shares) >= self.steps:
            self._decide(state)

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        """A run shorter than STEPS logged steps is judged on the steps it logged."""
        if not self.decided and self.shares:
            self._decide(state)

    def _decide(self, state: Any) -> None:
        self.decided = True
        if not all(share > self.threshold for share in self.shares):
            return
        if not getattr(state, "is_world_process_zero", True):  # every rank sees the same gathered share
            return
        lowest = min(self.shares)
        log.warning(
            "at least %.0f%% of prompt groups got the same reward for every sampled answer in the first %d logged "
            "steps (%s), so they have no advantage to learn from; sample more answers (%s.num_generations), raise "
            "%s.temperature, or use a softer reward (partial credit, e.g. length or similarity, over all-or-nothing "
            "matches).",
            100 * lowest,
            len(self.shares),
            ZERO_SPREAD_KEY,
            self.section,
            self.section,
        )


def reward_spread_callbacks(recipe: Recipe) -> list[TrainerCallback]:
    """The callbacks of a sampling stage (Stage.callbacks of GRPO and RLOO): the flat-reward warning."""
    return [RewardSpreadWarning(recipe.train.stage)]
