"""Patch trl's GRPO and RLOO trainers: rollouts decode through the merged adapter.

Sampling the completions is most of a GRPO or RLOO step on a CPU. Unmerged, every LoRA layer adds two small
matmuls per decoded token; folded into the weights for the generation (the exact weights restored after,
pipeline.models.merged_view.adapter_merged), decoding costs what the base costs. The policy's log-probs for
the loss are computed afterwards by the unmerged model, as before. trl picks completions in the private
`_generate_single_turn(prompt_ids, images, multimodal_fields, ...)` (GRPO adds num_generations); the mixin
wraps it, passing its arguments through.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from pipeline.train.patches.registry import record, turned_off

LIBRARY = "trl"
NAME = "merged_rollouts"
EXPECTED = ["self", "prompt_ids", "images", "multimodal_fields"]


def canary() -> str | None:
    """None while GRPOTrainer and RLOOTrainer generate in _generate_single_turn as this patch expects."""
    from trl import GRPOTrainer, RLOOTrainer

    for trainer in (GRPOTrainer, RLOOTrainer):
        method = getattr(trainer, "_generate_single_turn", None)
        if method is None:
            return f"{trainer.__name__}._generate_single_turn is gone"
        parameters = list(inspect.signature(method).parameters)
        if parameters[: len(EXPECTED)] != EXPECTED:
            return f"{trainer.__name__}._generate_single_turn now takes ({', '.join(parameters)})"
    return None


def merged_rollouts(merged: Callable[[Any], AbstractContextManager[Any]]) -> tuple[type, ...]:
    """(a trainer mixin,) that runs trl's generation inside `merged(model)`, or () when trl moved the method
    (one WARNING line; rollouts then decode through the unmerged adapter)."""
    problem = canary()
    if problem is not None:
        turned_off(NAME, LIBRARY, problem, "rollouts decode through the unmerged adapter")
        return ()

    class MergedRollouts:
        """Trainer mixin: trl's completions are sampled with the adapter folded into the weights."""

        def _generate_single_turn(self, *args: Any, **kwargs: Any) -> Any:
            with merged(self.model):  # type: ignore[attr-defined]
                return super()._generate_single_turn(*args, **kwargs)  # type: ignore[misc]

    record(NAME, True)
    return (MergedRollouts,)
