"""Read which attention kernel a loaded transformers model runs (kept in its config's private field)."""

from __future__ import annotations

from typing import Any

LIBRARY = "transformers"


def canary() -> str | None:
    """None while transformers' PretrainedConfig still has `_attn_implementation`."""
    from transformers import PretrainedConfig

    return (
        None
        if hasattr(PretrainedConfig, "_attn_implementation")
        else "PretrainedConfig._attn_implementation is gone"
    )


def attention_implementation(model: Any) -> str | None:
    """'sdpa', 'eager', 'flash_attention_2', ... for a loaded model; None when it cannot be told."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)
