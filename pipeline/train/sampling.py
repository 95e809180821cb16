"""Length-grouped training batches served in random order (little padding, no length curriculum).

transformers' LengthGroupedSampler cuts a random permutation into mega-batches of 50 batches, sorts each one
longest first and serves its batches in that order. A run shorter than one mega-batch (40 steps of 8, with
`train.group_by_length: true`; it is off by default) then trains from the longest examples to the shortest,
and with a decaying learning rate the short ones barely count. Here the same grouping is kept (little
padding, so no wasted compute) but the batches are shuffled, with the batch holding the longest example
still first so an out-of-memory error comes at step 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler


class ShuffledLengthGroupedSampler(Sampler[int]):
    """Indices such that each `batch_size` slice holds examples of similar length, slices in random order."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        from transformers.trainer_pt_utils import get_length_grouped_indices

        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        rest = torch.randperm(len(batches) - 1, generator=self.generator).tolist() if batches else []
        order = [0, *(1 + i for i in rest)] if batches else []
        return iter([index for position in order for index in batches[position]])


def length_grouped_sampler(trainer: Any, dataset: Any) -> ShuffledLengthGroupedSampler:
    """The sampler for a Trainer whose args ask for group_by_length: batches of one optimizer step per device."""
    args = trainer.args
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return ShuffledLengthGroupedSampler(lengths, args.train_batch_size * args.gradient_accumulation_steps)
