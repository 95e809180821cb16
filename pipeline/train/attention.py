"""Attention for padding-free batches without flash attention: each packed example attends only to itself.

With `train.padding_free` (or packing) a batch is one row holding its examples back to back, told apart by
position_ids that restart at 0. flash-attn's varlen kernel handles such rows on GPUs; transformers' SDPA path
instead builds a block-diagonal mask over the whole row and pays attention over all of it (quadratic in the
row length, not in each example's).
`packed_sdpa` runs PyTorch's SDPA once per example, causal, on that example's own slice: the same result,
with no mask. Anything that is not such a row (padded batches, generation with a KV cache) goes to
transformers' own SDPA function unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import torch

PACKED_SDPA = "packed_sdpa"
# On CPU, PyTorch's flash kernel has a fixed cost per call that the plain matmul ("math") kernel does not:
# measured on 2 cores (bf16, 9 heads of 64, forward + backward), math is 1.5x faster at 64-128 tokens and
# slower from ~256, where it also starts to hold a full attention matrix per head for the backward pass.
# Without gradients (evaluation) the flash kernel is faster at every length (48 tokens: 0.13 vs 0.68 ms) and
# gives the bit-identical result of scoring the example alone, so math is used only while training.
_MATH_BELOW_TOKENS = 256
_last_bounds: list[Any] = [None, None]  # (position_ids, bounds): every layer of one forward asks again


def example_bounds(position_ids: torch.Tensor | None, length: int) -> list[int] | None:
    """Start offsets of the examples in a one-row padding-free batch, plus the row length; None otherwise."""
    if position_ids is None or position_ids.dim() != 2 or tuple(position_ids.shape) != (1, length):
        return None
    if position_ids is _last_bounds[0]:
        return _last_bounds[1]
    bounds = None
    if int(position_ids[0, 0]) == 0:  # else a decoding step or a continuation: not a packed row
        starts = torch.nonzero(position_ids[0] == 0).flatten().tolist()
        bounds = [*starts, length] if len(starts) > 1 else None
    _last_bounds[:] = [position_ids, bounds]
    return bounds


def packed_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: per-example causal SDPA on padding-free rows, plain SDPA otherwise."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    same_length = query.shape[2] == key.shape[2]
    bounds = example_bounds(kwargs.get("position_ids"), query.shape[2]) if same_length else None
    if bounds is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    kwargs.pop("is_causal", None)
    pieces = []
    for start, end in itertools.pairwise(bounds):
        short_on_cpu = (
            query.device.type == "cpu" and end - start < _MATH_BELOW_TOKENS and torch.is_grad_enabled()
        )
        with sdpa_kernel(SDPBackend.MATH) if short_on_cpu else contextlib.nullcontext():
            piece, _ = sdpa_attention_forward(
                module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
                is_causal=True, **kwargs,
            )  # fmt: skip
        pieces.append(piece)
    return torch.cat(pieces, dim=1), None  # sdpa_attention_forward returns (batch, seq, heads, dim)


def use_packed_sdpa(model: torch.nn.Module) -> bool:
    """Switch a model that uses SDPA to `packed_sdpa` (for padding-free or packed rows); True if switched."""
    from pipeline.train.patches.transformers_attention import attention_implementation

    if attention_implementation(model) != "sdpa":
        return False  # flash attention handles packed rows itself; eager is the user's explicit choice
    model.set_attn_implementation(register_packed_sdpa())  # type: ignore[operator]
    return True


def register_packed_sdpa() -> str:
    """Register `packed_sdpa` with transformers (attention and mask functions); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, packed_sdpa)
    # The mask still matters on the fallback path (padded batches), where it is SDPA's own.
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA
