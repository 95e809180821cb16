"""pipeline.train.patches.peft_lora: LoRA updates in one multiply give peft's outputs and gradients, and
everything the restatement does not cover keeps peft's own forward."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import layer as lora_layer

from pipeline.train.patches import peft_lora, registry
from pipeline.train.patches.peft_lora import lora_updates_in_one_multiply


def _adapted(model: Any, **settings: Any) -> Any:
    """The tiny model with LoRA on every linear layer, B random (peft starts it at zero), scaling 4."""
    config = LoraConfig(r=4, lora_alpha=16, target_modules="all-linear", **settings)
    adapted = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
    return adapted


def _replaced(model: Any) -> list[str]:
    """Names of the LoRA layers whose forward is not peft's class method right now."""
    return [n for n, m in model.named_modules() if type(m) is lora_layer.Linear and "forward" in vars(m)]


def _peft_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls that reach peft's own LoRA Linear forward."""
    calls: list[int] = []
    original = lora_layer.Linear.forward

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(lora_layer.Linear, "forward", counted)
    return calls


def _logits_and_grads(
    model: Any, ids: torch.Tensor, autocast: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids).logits.float()
    logits.square().mean().backward()
    return logits.detach(), [p.grad.clone() for n, p in model.named_parameters() if p.requires_grad]


def _distance(found: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """Relative distance of a list of tensors from a reference list (one norm over all of them)."""
    squared = sum(float((f.float() - r.float()).norm() ** 2) for f, r in zip(found, reference, strict=True))
    return (squared / sum(float(r.float().norm() ** 2) for r in reference)) ** 0.5


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_same_logits_and_gradients_as_peft(
    tiny_model: Any, autocast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every plain LoRA layer takes the one-multiply path. In fp32 its logits and LoRA gradients are peft's;
    under bf16 autocast (where the two round at different points) they are no further from the fp32 result
    than peft's own."""
    model = _adapted(tiny_model)
    ids = torch.randint(3, 60, (2, 11), generator=torch.Generator().manual_seed(1))
    exact_logits, exact_grads = _logits_and_grads(model, ids, autocast=False)
    peft_logits, peft_grads = _logits_and_grads(model, ids, autocast)
    with lora_updates_in_one_multiply(model, active=True):
        calls = _peft_calls(monkeypatch)  # after the canary has read peft's own forward
        logits, grads = _logits_and_grads(model, ids, autocast)
    assert calls == [] and registry.active_patches()["lora_addmm"] == "on"
    assert len(grads) == len(peft_grads) > 0
    if not autocast:
        assert _distance([logits], [peft_logits]) < 1e-6
        assert _distance(grads, peft_grads) < 1e-5
    else:
        peft_error = _distance(peft_grads, exact_grads)
        assert 0 < peft_error < 0.1
        assert _distance(grads, exact_grads) < 2 * peft_error
        assert _distance([logits], [exact_logits]) < 2 * _distance([peft_logits], [exact_logits])
    assert not _replaced(model)  # peft's forward is back


@pytest.mark.parametrize(
    ("settings", "state"),
    [({"lora_dropout": 0.1}, "dropout"), ({"use_dora": True}, "dora"), ({}, "disabled"), ({}, "merged")],
)
def test_what_it_does_not_restate_keeps_peft_forward(
    tiny_model: Any, settings: dict[str, Any], state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropout, DoRA, disabled adapters (DPO's reference) and merged adapters all go to peft's forward."""
    model = _adapted(tiny_model, **settings)
    layers = sum(1 for m in model.modules() if type(m) is lora_layer.Linear)
    ids = torch.tensor([[5, 9, 11, 4]])
    with lora_updates_in_one_multiply(model, active=True):
        calls = _peft_calls(monkeypatch)
        if state == "disabled":
            with model.disable_adapter():
                model(ids)
        else:
            if state == "merged":
                model.merge_adapter()
            model(ids)
    assert len(calls) == layers > 0


def test_inactive_or_changed_peft_leaves_the_model_alone(
    tiny_model: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Not active: nothing replaced. peft's forward no longer saying the formula: one WARNING naming peft."""
    model = _adapted(tiny_model)
    with lora_updates_in_one_multiply(model, active=False):
        assert not _replaced(model)
    monkeypatch.setattr(peft_lora, "_FORMULA", "result = something else")
    with (
        caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"),
        lora_updates_in_one_multiply(model, active=True),
    ):
        assert not _replaced(model)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'lora_addmm' is off" in warnings[0] and "peft " in warnings[0]


def test_training_on_cpu_turns_it_on(tiny_trainer: Any) -> None:
    """The SFT trainer fuses while it trains on CPU, and hands back peft's forward after."""
    registry.reset()
    trainer = tiny_trainer(max_steps=1)
    trainer.train()
    assert registry.active_patches()["lora_addmm"] == "on"
    assert not _replaced(trainer.model)
