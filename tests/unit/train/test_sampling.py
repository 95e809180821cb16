"""Length-grouped batches in random order: same batches as transformers' grouping, no longest-first curriculum."""

from __future__ import annotations

import random

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from pipeline.train.sampling import ShuffledLengthGroupedSampler

_RNG = random.Random(3)
LENGTHS = [_RNG.randint(5, 300) for _ in range(800)]
BATCH = 8


def _batches(indices: list[int]) -> list[list[int]]:
    return [indices[i : i + BATCH] for i in range(0, len(indices), BATCH)]


def test_every_example_once_in_the_same_batches_as_transformers() -> None:
    """The batches are transformers' length groups (little padding); only their order changes."""
    ours = list(ShuffledLengthGroupedSampler(LENGTHS, BATCH, torch.Generator().manual_seed(0)))
    theirs = get_length_grouped_indices(LENGTHS, BATCH, generator=torch.Generator().manual_seed(0))
    assert sorted(ours) == list(range(len(LENGTHS)))
    assert sorted(map(sorted, _batches(ours))) == sorted(map(sorted, _batches(theirs)))
    assert _batches(ours)[0] == _batches(theirs)[0]  # the longest example still comes first (early OOM)
    assert max(LENGTHS) == max(LENGTHS[i] for i in _batches(ours)[0])


def test_batch_order_is_not_longest_first() -> None:
    """transformers serves a mega-batch long to short; ours mixes long and short batches."""
    # 800 examples in batches of 8: mega-batches of 25 batches (transformers: min(800 // 32, 50)).
    generator = torch.Generator().manual_seed(0)
    theirs = _batches(get_length_grouped_indices(LENGTHS, BATCH, generator=generator))[1:25]
    ours = _batches(list(ShuffledLengthGroupedSampler(LENGTHS, BATCH, torch.Generator().manual_seed(0))))[
        1:25
    ]

    def longest(batches: list[list[int]]) -> list[int]:
        return [max(LENGTHS[i] for i in batch) for batch in batches]

    assert longest(theirs) == sorted(longest(theirs), reverse=True)  # the curriculum being fixed
    rising = sum(b > a for a, b in zip(longest(ours), longest(ours)[1:], strict=False))
    assert 5 < rising < 19  # about half of the 23 neighbours rise in a random order
    # Within a batch lengths stay close: the padding saving of grouping is kept.
    spread = [max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in ours]
    assert max(spread) < 40


def test_seeded_generator_gives_the_same_order() -> None:
    first = list(ShuffledLengthGroupedSampler(LENGTHS, BATCH, torch.Generator().manual_seed(5)))
    again = list(ShuffledLengthGroupedSampler(LENGTHS, BATCH, torch.Generator().manual_seed(5)))
    assert first == again and len(first) == len(LENGTHS)
