"""An adapter folded into its base for fast decoding: for a block (evaluation) or for good (generate, chat).

Unmerged, every adapted linear layer runs two extra small matmuls per token (x·A, then ·B): at batch 1 on a
CPU, lora-small's 210 adapted layers cost more than the base model itself. Folded in (W + s·B·A), decoding
costs what the base costs. peft's own unmerge subtracts the delta again, which in bf16 does not give back
the original weights bit for bit, so `adapter_merged` keeps a copy and restores it exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


def _adapted_layers(model: Any) -> list[Any]:
    """peft's tuner layers of a PeftModel (empty for a plain transformers model)."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not isinstance(model, PeftModel):
        return []
    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def can_merge(model: PreTrainedModel) -> bool:
    """True for a PeftModel with one active, enabled, unmerged adapter on unquantized weights: folding it in
    is then exact up to the weights' rounding. 4/8-bit bases are left alone (merging would requantize)."""
    layers = _adapted_layers(model)
    if not layers or getattr(model, "hf_quantizer", None) is not None:
        return False
    if getattr(model.base_model.model, "is_quantized", False):
        return False
    return all(
        not layer.disable_adapters and not layer.merged and len(layer.active_adapters) == 1
        for layer in layers
    )


@contextmanager
def adapter_merged(model: PreTrainedModel) -> Iterator[None]:
    """Inside the block the active adapter is merged into the weights; after it, the exact original weights
    and the unmerged adapter are back. A model that `can_merge` refuses runs the block as it is."""
    if not can_merge(model):
        yield
        return
    originals: dict[torch.Tensor, torch.Tensor] = {}
    for layer in _adapted_layers(model):
        weight = getattr(layer.get_base_layer(), "weight", None)
        if weight is not None:
            originals[weight] = weight.detach().to("cpu", copy=True)
    model.merge_adapter()  # type: ignore[operator]
    try:
        yield
    finally:
        model.unmerge_adapter()  # type: ignore[operator]
        import torch

        with torch.no_grad():
            for weight, original in originals.items():
                weight.copy_(original)


def merged_for_inference(model: PreTrainedModel) -> PreTrainedModel:
    """The adapter folded into the base for good (a plain transformers model), when `can_merge`; else the
    model unchanged. For `generate` and `chat`, which never switch the adapter off."""
    if not can_merge(model):
        return model
    log.debug("Merging the adapter into the base for decoding")
    return model.merge_and_unload()  # type: ignore[operator]
