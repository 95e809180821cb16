"""Padding-free reward-model batches: every chosen and rejected answer of a micro-batch in one row.

trl's reward collator pads the batch's 2 x B rows to the longest (15% padding on the bundled pairs) and its
model call pools each row's score at its last non-pad token. `PackedPairs` puts the rows back to back
instead, position_ids restarting at 0 for each, so per-example attention (pipeline.train.attention) runs
each answer on its own slice with no mask; `scores_at_row_ends` makes the sequence classifier's output the
score at each example's last non-pad token, in the order trl expects (chosen scores, then rejected), so trl's
own loss, margin term and metrics run unchanged. Both are plain torch hooks on the model instance, removed
when training ends; without `segment_ends` in a call (evaluation, generation) the model runs as usual.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

ENDS = "segment_ends"  # the collator's key for the last scored position of each example in the row


@dataclass
class PackedPairs:
    """Collator: a micro-batch of trl's tokenized pairs (chosen_ids, rejected_ids) as one padding-free row."""

    pad_token_id: int | None = None  # set by the trainer from its tokenizer; a trailing pad is not scored

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """input_ids, position_ids and attention_mask of shape (1, tokens); segment_ends of shape (2B,)."""
        rows = [list(e["chosen_ids"]) for e in examples] + [list(e["rejected_ids"]) for e in examples]
        ids: list[int] = []
        positions: list[int] = []
        ends: list[int] = []
        for row in rows:
            start = len(ids)
            ids.extend(row)
            positions.extend(range(len(row)))
            # transformers' sequence classifiers score the last token that is not the pad token
            last = max((i for i, t in enumerate(row) if t != self.pad_token_id), default=len(row) - 1)
            ends.append(start + last)
        batch = {
            "input_ids": torch.tensor([ids]),
            "position_ids": torch.tensor([positions]),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
            ENDS: torch.tensor(ends),
        }
        if "margin" in examples[0]:
            batch["margin"] = torch.tensor([e["margin"] for e in examples], dtype=torch.float)
        return batch


@contextlib.contextmanager
def scores_at_row_ends(model: torch.nn.Module, head: torch.nn.Module) -> Iterator[None]:
    """While the block runs, a call of `model` with segment_ends= returns logits of shape (examples, 1): the
    score `head` gave each example's last position; the hooks are gone after the block."""
    pending: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []

    def take_ends(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ends = kwargs.pop(ENDS, None)
        pending[:] = [ends] if ends is not None else []
        return args, kwargs

    def keep_scores(_: torch.nn.Module, __: Any, output: torch.Tensor) -> None:
        if pending:
            scores[:] = [output]

    def pool(_: torch.nn.Module, __: Any, output: Any) -> Any:
        if pending and scores:
            ends = pending[0].to(scores[0].device)
            output.logits = scores[0][0, ends]  # (1, tokens, 1) -> (examples, 1)
        pending.clear()
        scores.clear()
        return output

    handles = [
        model.register_forward_pre_hook(take_ends, with_kwargs=True),
        head.register_forward_hook(keep_scores),
        model.register_forward_hook(pool),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class PackedRewardRows:
    """Trainer mixin of the reward stage: PackedPairs batches, scored by `scores_at_row_ends` while it trains."""

    model: Any
    data_collator: Any
    processing_class: Any

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """trl's RewardTrainer.train on padding-free rows."""
        from pipeline.models.heads import REWARD_HEAD

        if isinstance(self.data_collator, PackedPairs):
            self.data_collator.pad_token_id = self.processing_class.pad_token_id
        head = next(m for n, m in self.model.named_modules() if n.split(".")[-1] == REWARD_HEAD)
        with scores_at_row_ends(self.model, head):
            return super().train(*args, **kwargs)  # type: ignore[misc]
