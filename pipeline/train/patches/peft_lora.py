"""Patch peft while training on CPU: each plain LoRA linear adds its update inside one multiply.

peft's LoRA Linear computes `result + lora_B(lora_A(dropout(x))) * scaling`: after the B multiply come two
passes over the layer's full output width (scale, add), and two more in backward. Scaling the rank-r
intermediate instead (r columns) and letting the B multiply accumulate into the result (torch.addmm) gives
the same sum, rounded once instead of three times, at 1.04x per lora-small forward + backward (paired
batches, bench/RESULTS.md). Anything else (DoRA and the other variants, dropout, LoRA bias, merged or
disabled adapters, per-row adapter names, quantized layers, GPUs) keeps peft's own forward.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from pipeline.train.patches.registry import record, turned_off

LIBRARY = "peft"
# The computation restated here; if peft's forward stops saying it, the patch turns itself off.
_FORMULA = "result = result + lora_B(lora_A(dropout(x))) * scaling"


def canary() -> str | None:
    """None while peft's LoRA Linear still computes its update as this module restates it."""
    from peft.tuners.lora.layer import Linear

    try:
        source = inspect.getsource(Linear.forward)
    except (OSError, TypeError):  # installed without its .py sources
        return "peft.tuners.lora.layer.Linear.forward cannot be read"
    if _FORMULA not in source:
        return "peft.tuners.lora.layer.Linear.forward no longer adds lora_B(lora_A(dropout(x))) * scaling"
    # How peft tells DoRA and the other variants apart, which _plain reads.
    if "self.lora_variant" not in source:
        return "peft.tuners.lora.layer.Linear.forward no longer dispatches variants through self.lora_variant"
    return None


@contextlib.contextmanager
def lora_updates_in_one_multiply(model: torch.nn.Module, active: bool) -> Iterator[None]:
    """While active, the model's plain LoRA linears compute on CPU through `_forward`; peft's forward after."""
    problem = canary() if active else None
    if problem is not None:
        turned_off("lora_addmm", LIBRARY, problem, "LoRA layers keep peft's own forward")
    if not active or problem is not None:
        yield
        return
    from peft.tuners.lora.layer import Linear

    layers = [module for module in model.modules() if type(module) is Linear]  # quantized layers differ
    for layer in layers:
        layer.forward = functools.partial(_forward, layer)  # an instance attribute: the class stays peft's
    record("lora_addmm", bool(layers), "" if layers else "no plain LoRA linear layers")
    try:
        yield
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)


def _forward(layer: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """peft's LoRA Linear forward with each update as addmm(result, scaling * lora_A(x), lora_B.T)."""
    from peft.tuners.lora.layer import Linear

    if args or kwargs or not _plain(layer, x):
        return Linear.forward(layer, x, *args, **kwargs)
    result = layer.base_layer(x)
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        low_rank = layer.lora_A[name](x) * layer.scaling[name]
        width = result.shape[-1]
        summed = torch.addmm(
            result.reshape(-1, width), low_rank.reshape(-1, low_rank.shape[-1]), layer.lora_B[name].weight.T
        )
        result = summed.view(result.shape)
    return result


def _plain(layer: Any, x: torch.Tensor) -> bool:
    """True when peft would compute nothing but result + lora_B(lora_A(x)) * scaling, on CPU, in one dtype."""
    if x.device.type != "cpu" or layer.disable_adapters or layer.merged:
        return False
    autocast = torch.is_autocast_enabled("cpu")  # else every operand must already share x's dtype
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        a, b = layer.lora_A[name], layer.lora_B[name]
        variant = name in layer.lora_variant or layer.use_dora.get(name, False)
        if variant or not isinstance(layer.lora_dropout[name], torch.nn.Identity):
            return False
        dtypes = {x.dtype, layer.base_layer.weight.dtype, a.weight.dtype, b.weight.dtype}
        if b.bias is not None or (not autocast and len(dtypes) > 1):
            return False
    return True
