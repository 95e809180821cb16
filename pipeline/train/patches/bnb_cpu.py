"""Patch bitsandbytes: keep 4-bit layers on their exact path on CPU (no bf16 repacking in eval mode).

On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks 4-bit weights with bf16 scales on the first no-grad
forward in eval mode: logits then differ from those seen in training (and from a de-quantized merge), and
layers narrower than the 64-value quantization block fail outright. Each Linear4bit carries the switch
`support_avx512bf16_for_cpu`; turning it off keeps the exact path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.train.patches.registry import record, turned_off

if TYPE_CHECKING:
    from transformers import PreTrainedModel

LIBRARY = "bitsandbytes"
SWITCH = "support_avx512bf16_for_cpu"


def canary() -> str | None:
    """None while a bitsandbytes Linear4bit still carries the CPU fast-path switch."""
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(64, 64, bias=False)
    return None if hasattr(layer, SWITCH) else f"Linear4bit has no attribute {SWITCH}"


def keep_exact_4bit_path(model: PreTrainedModel) -> bool:
    """Turn off the bf16 repacking fast path of every 4-bit layer; True when the switch was found."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    if layers and not all(hasattr(m, SWITCH) for m in layers):
        return turned_off(
            "exact_4bit_cpu",
            LIBRARY,
            f"Linear4bit has no attribute {SWITCH}",
            "4-bit logits on CPU may differ from training's",
        )
    for module in layers:
        setattr(module, SWITCH, False)
    return record("exact_4bit_cpu", bool(layers))
