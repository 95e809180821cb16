"""pipeline.train.cpu_head: the same per-token outputs and gradients as trl's fused-head kernel, on CPU."""

from __future__ import annotations

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

import pipeline.train.cpu_head as cpu_head
from pipeline.train.cpu_head import CpuLogProbs

OUTPUTS = ("log_probs", "entropy", "is_top1")


def _inputs(rows: int = 13, hidden: int = 16, vocab: int = 50) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(rows, hidden, generator=generator, requires_grad=True)
    weight = torch.randn(vocab, hidden, generator=generator) * 0.5
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    targets[0] = int((states[0].detach() @ weight.T).argmax())  # at least one top-1 hit
    return states, weight, targets


def _run(function: type, states: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> tuple:
    log_probs, entropy, sq, mean, top1 = function.apply(
        states, weight, None, targets, 0.7, 32768, None, 1.0, OUTPUTS
    )
    (grad,) = torch.autograd.grad(log_probs.sum(), states)
    return log_probs.detach(), entropy.detach(), top1, grad, (sq, mean)


@pytest.mark.parametrize(
    "block_elements", [2**25, 200]
)  # one block; and 4-row blocks, recomputed in backward
def test_matches_trl_kernel(monkeypatch: pytest.MonkeyPatch, block_elements: int) -> None:
    """Log-probabilities, entropy, top-1 hits and the hidden-state gradient equal trl's (temperature 0.7)."""
    monkeypatch.setattr(cpu_head, "_BLOCK_ELEMENTS", block_elements)
    monkeypatch.setattr(CpuLogProbs, "original", ChunkedLogProbFunction)
    states, weight, targets = _inputs()
    ours = _run(CpuLogProbs, states, weight, targets)
    reference = _run(ChunkedLogProbFunction, states, weight, targets)
    for mine, theirs in zip(ours[:4], reference[:4], strict=True):
        assert torch.allclose(mine.float(), theirs.float(), atol=1e-5)
    assert ours[4] == (None, None)
    assert bool(ours[2][0]) and ours[2].dtype == torch.bool


def test_other_devices_and_outputs_go_to_trl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Soft-capped logits (and any output it does not compute) are left to trl's own kernel."""
    calls: list[tuple] = []

    class Recorder:
        @staticmethod
        def apply(*args: object) -> str:
            calls.append(args)
            return "trl"

    monkeypatch.setattr(CpuLogProbs, "original", Recorder)
    states, weight, targets = _inputs()
    assert CpuLogProbs.apply(states, weight, None, targets, 1.0, 8, 30.0, 1.0, OUTPUTS) == "trl"
    assert (
        CpuLogProbs.apply(states, weight, None, targets, 1.0, 8, None, 1.0, ("log_probs", "mean_logits"))
        == "trl"
    )
    assert len(calls) == 2
