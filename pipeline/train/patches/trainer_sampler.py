"""Patch transformers' Trainer: length-grouped batches come in random order (pipeline.train.sampling says why).

Trainer picks its training sampler in the private `_get_train_sampler(train_dataset=None)`; the mixin
overrides it only when train.group_by_length is on, and defers to Trainer otherwise.
"""

from __future__ import annotations

import inspect
from typing import Any

from pipeline.train.patches.registry import record, turned_off

LIBRARY = "transformers"


def canary() -> str | None:
    """None while Trainer._get_train_sampler(self, train_dataset=None) exists as this patch expects."""
    from transformers import Trainer

    method = getattr(Trainer, "_get_train_sampler", None)
    if method is None:
        return "Trainer._get_train_sampler is gone"
    parameters = list(inspect.signature(method).parameters)
    if parameters[:2] != ["self", "train_dataset"]:
        return f"Trainer._get_train_sampler now takes ({', '.join(parameters)})"
    return None


class ShuffledLengthGroups:
    """Trainer mixin: group_by_length batches from pipeline.train.sampling (similar lengths, random order)."""

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        from pipeline.train.sampling import length_grouped_sampler

        dataset = self.train_dataset if train_dataset is None else train_dataset  # type: ignore[attr-defined]
        grouped = self.args.train_sampling_strategy == "group_by_length"  # type: ignore[attr-defined]
        if grouped and dataset is not None and "input_ids" in getattr(dataset, "column_names", ()):
            return length_grouped_sampler(self, dataset)
        return super()._get_train_sampler(train_dataset)  # type: ignore[misc]


def sampler_mixins(group_by_length: bool) -> tuple[type, ...]:
    """(ShuffledLengthGroups,) when train.group_by_length is on and Trainer still fits the patch; else ()."""
    if not group_by_length:
        record("shuffled_length_groups", False, "train.group_by_length is off")
        return ()
    problem = canary()
    if problem is not None:
        turned_off(
            "shuffled_length_groups",
            LIBRARY,
            problem,
            "group_by_length batches come longest first per mega-batch",
        )
        return ()
    record("shuffled_length_groups", True)
    return (ShuffledLengthGroups,)
