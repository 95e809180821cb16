"""A reward model on held-out preference pairs: does its score rank each chosen answer above the rejected one?

The base side is the untrained score head on the base (chance, up to its random init), the adapted side the
trained reward model; `accuracy` is the share of pairs scored the right way round and `margin` the mean
score gap (chosen - rejected).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pipeline.models.heads import score_rows

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def evaluate_reward_model(
    model: PreTrainedModel, pairs: list[dict[str, list[int]]], batch_size: int, pad_id: int
) -> dict[str, Any]:
    """{reward_model: {accuracy, margin, chosen_score, rejected_score, pairs}, per_example, seconds} for the
    eval pairs (pipeline.evaluation.preference.prepare_pairs' token ids)."""
    started = time.perf_counter()
    chosen = score_rows(model, [p["prompt_ids"] + p["chosen_ids"] for p in pairs], batch_size, pad_id)
    rejected = score_rows(model, [p["prompt_ids"] + p["rejected_ids"] for p in pairs], batch_size, pad_id)
    gaps = [c - r for c, r in zip(chosen, rejected, strict=True)]
    count = len(gaps)
    summary = {
        "accuracy": sum(g > 0 for g in gaps) / count if count else None,
        "margin": sum(gaps) / count if count else None,
        "chosen_score": sum(chosen) / count if count else None,
        "rejected_score": sum(rejected) / count if count else None,
        "pairs": count,
    }
    return {
        "reward_model": summary,
        "examples": count,
        "seconds": {"scoring": time.perf_counter() - started},
        "per_example": {"chosen_score": chosen, "rejected_score": rejected},
    }
