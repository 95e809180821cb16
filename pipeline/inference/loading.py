"""Load a run, adapter or model for inference on the requested device and dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.models.artifacts import LoadedTarget


def load_for_inference(
    target: str, dtype: str | None = None, device: str = "auto", merge: bool = False
) -> LoadedTarget:
    """Load a target (run, adapter, merged or base model) onto the device (auto: CUDA when present); with
    merge, an adapter is folded into the base so decoding runs at the base's speed."""
    import torch

    from pipeline.models.artifacts import load_target, resolve_target
    from pipeline.models.heads import refuse_reward_model
    from pipeline.models.merged_view import merged_for_inference

    ref = resolve_target(target)
    refuse_reward_model(ref.adapter_dir, ref.tokenizer_dir, target, "generate text")
    loaded = load_target(target, dtype=dtype)
    if merge:
        loaded.model = merged_for_inference(loaded.model)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    quantized = getattr(loaded.model, "hf_quantizer", None) is not None
    if device != "cpu" and not quantized:
        loaded.model.to(device)
    return loaded
