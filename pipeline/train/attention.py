"""Attention for padding-free batches without flash attention: each packed example attends only to itself.

With `train.padding_free` (or packing) a batch is one row holding its examples back to back, told apart by
position_ids that restart at 0. flash-attn's varlen kernel handles such rows on GPUs; transformers' SDPA path
instead builds a block-diagonal mask over the whole row and pays attention over all of it (quadratic in the
row length, not in each example's).
`packed_sdpa` runs PyTorch's SDPA once per example, causal, on that example's own slice: the same result,
with no mask (short examples while training on CPU: two batched multiplies, `_short_causal_attention`).
Anything that is not such a row (padded batches, generation with a KV cache) goes to transformers' own SDPA
function unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import torch

PACKED_SDPA = "packed_sdpa"
# On CPU, PyTorch's flash kernel has a fixed cost per call that plain multiplies do not: measured on 2 cores
# (bf16, 9 heads of 64, forward + backward), SDPA's math kernel is 1.5x faster at 64-128 tokens and slower
# from ~256, where it also starts to hold a full attention matrix per head for the backward pass.
# `_short_causal_attention` is those multiplies with less around them (1.11x per lora-small step over the
# math kernel, bench/RESULTS.md). Without gradients (evaluation) the flash kernel is faster at every length
# (48 tokens: 0.13 vs 0.68 ms) and gives the bit-identical result of scoring the example alone, so the short
# paths are used only while training.
_SHORT_BELOW_TOKENS = 256
# False: SDPA's math kernel for short examples (bench/train_levers.py's A/B).
_SHORT_KERNEL = {"enabled": True}
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
    plain = _SHORT_KERNEL["enabled"] and _plain_causal(query, key, value, kwargs)
    sizes = [end - start for start, end in itertools.pairwise(bounds)]
    pieces = []
    # One split, not a slice per example: a slice's backward writes its gradient into a zeroed copy of the
    # whole row, so n slices cost n row-sized fills and additions; a split's backward is one concatenation.
    parts = zip(sizes, query.split(sizes, 2), key.split(sizes, 2), value.split(sizes, 2), strict=True)
    for length, q, k, v in parts:
        short_on_cpu = query.device.type == "cpu" and length < _SHORT_BELOW_TOKENS and torch.is_grad_enabled()
        if short_on_cpu and plain:
            pieces.append(_short_causal_attention(q, k, v, kwargs.get("scaling")))
            continue
        with sdpa_kernel(SDPBackend.MATH) if short_on_cpu else contextlib.nullcontext():
            piece, _ = sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)
        pieces.append(piece)
    return torch.cat(pieces, dim=1), None  # sdpa_attention_forward returns (batch, seq, heads, dim)


@contextlib.contextmanager
def short_example_kernel(enabled: bool = True) -> Iterator[None]:
    """Inside the block, short examples train on CPU through `_short_causal_attention` (enabled, the default
    outside any block) or SDPA's math kernel (bench/train_levers.py's A/B); the previous choice after."""
    previous = _SHORT_KERNEL["enabled"]
    _SHORT_KERNEL["enabled"] = enabled
    try:
        yield
    finally:
        _SHORT_KERNEL["enabled"] = previous


def _plain_causal(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, kwargs: dict[str, Any]
) -> bool:
    """True when attention is nothing but causal softmax(QK^T * scaling)V: no dropout, window, soft-cap or bias."""
    extras = ("sliding_window", "softcap", "position_bias", "s_aux")
    return (
        not kwargs.get("dropout")
        and all(kwargs.get(name) is None for name in extras)
        and query.shape[1] % key.shape[1] == 0
        and key.shape[-1] == value.shape[-1] == query.shape[-1]
    )


def _short_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """Causal attention of one example, (1, heads, L, dim) in, (1, L, heads, dim) out, as two batched multiplies.

    The query heads that share a key/value head are stacked as extra rows of one multiply instead of copying
    the key and value per head; scaling and the causal mask ride in the first multiply (baddbmm adds the
    mask's -inf above the diagonal), scores are softmaxed in fp32 (as autocast does), probabilities multiplied
    in the value's dtype."""
    _, heads, length, dim = query.shape
    groups = key.shape[1]
    stacked = query[0].reshape(groups, heads // groups * length, dim)
    future = _future(length, heads // groups, query.dtype, query.device)
    scale = dim**-0.5 if scaling is None else scaling
    scores = torch.baddbmm(future, stacked, key[0].transpose(1, 2), alpha=scale)
    probabilities = scores.softmax(-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probabilities, value[0])  # (groups, heads/groups * L, dim)
    return out.view(heads, length, dim).transpose(0, 1).unsqueeze(0)


@functools.lru_cache(maxsize=128)
def _future(length: int, repeats: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(repeats * length, length) additive mask: -inf at the positions after each query row's own, else 0."""
    mask = torch.full((length, length), float("-inf"), dtype=dtype, device=device).triu(1)
    return mask.repeat(repeats, 1)


@contextlib.contextmanager
def packed_attention(model: torch.nn.Module, active: bool = True) -> Iterator[bool]:
    """Inside the block (when active), a model that uses SDPA runs `packed_sdpa` (padding-free or packed rows);
    yields whether the model attends per example. The model's own implementation is back when the block ends.

    Flash attention handles packed rows itself (yields True, nothing switched); eager attention is the user's
    explicit choice (yields False)."""
    from pipeline.train.patches.transformers_attention import attention_implementation

    implementation = attention_implementation(model)
    if not active or implementation != "sdpa":
        yield active and implementation in (PACKED_SDPA, "flash_attention_2", "flash_attention_3")
        return
    model.set_attn_implementation(register_packed_sdpa())  # type: ignore[operator]
    try:
        yield True
    finally:
        model.set_attn_implementation(implementation)  # type: ignore[operator]
        _last_bounds[:] = [None, None]  # no position ids of this model's last batch kept alive


def register_packed_sdpa() -> str:
    """Register `packed_sdpa` with transformers (attention and mask functions); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, packed_sdpa)
    # The mask still matters on the fallback path (padded batches), where it is SDPA's own.
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA
