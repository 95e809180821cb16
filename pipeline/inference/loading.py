"""Load a run, adapter or model for inference on the requested device and dtype."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.models.artifacts import LoadedTarget


def load_for_inference(target: str, dtype: str | None = None, device: str = "auto") -> LoadedTarget:
    """Load a target (run, adapter, merged or base model) onto the device (auto: CUDA when present)."""
    import torch

    from pipeline.models.artifacts import load_target

    loaded = load_target(target, dtype=dtype)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    quantized = getattr(loaded.model, "hf_quantizer", None) is not None
    if device != "cpu" and not quantized:
        loaded.model.to(device)
    return loaded
