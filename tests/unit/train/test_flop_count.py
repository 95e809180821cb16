"""CachedFlopCount: transformers' per-step FLOP count, with the model's parameters counted once."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import Trainer

from pipeline.train.flop_count import CachedFlopCount


def _counting(model: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every num_parameters call on the model."""
    calls: list[int] = []
    count = model.num_parameters

    def counted(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        return count(*args, **kwargs)

    monkeypatch.setattr(model, "num_parameters", counted)
    return calls


def test_same_count_as_transformers_with_one_walk_per_model(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step gets transformers' 6 x tokens x parameters; the parameters are counted once per model,
    again for another model; inputs without input_ids (preference batches) count 0, as in transformers."""
    inputs = {"input_ids": torch.zeros(1, 37, dtype=torch.long)}
    expected = Trainer.floating_point_ops(SimpleNamespace(model=tiny_model), inputs)  # type: ignore[arg-type]
    assert expected == 6 * 37 * tiny_model.num_parameters(exclude_embeddings=True) > 0
    other = copy.deepcopy(tiny_model)
    holder = CachedFlopCount()
    holder.model = tiny_model
    calls = _counting(tiny_model, monkeypatch)
    assert [holder.floating_point_ops(inputs) for _ in range(3)] == [expected] * 3
    assert len(calls) == 1
    assert holder.floating_point_ops({"prompt_input_ids": inputs["input_ids"]}) == 0
    holder.model = torch.nn.Linear(2, 2)  # no num_parameters: 0, as transformers gives
    assert holder.floating_point_ops(inputs) == 0
    holder.model = other
    other_calls = _counting(other, monkeypatch)
    assert holder.floating_point_ops(inputs) == expected and len(other_calls) == 1 and len(calls) == 1


def test_a_training_run_counts_parameters_once(tiny_trainer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three steps of SFT: total_flos is the sum over steps of 6 x tokens x parameters, from a single count."""
    trainer = tiny_trainer(rows=6, max_steps=3, batch_size=2)
    calls = _counting(trainer.model, monkeypatch)
    trainer.train()
    parameters = trainer.model.num_parameters(exclude_embeddings=True)
    assert len(calls) == 2  # the run's one count, and this test's
    assert trainer.state.total_flos == 6 * (3 * 2 * 5) * parameters
