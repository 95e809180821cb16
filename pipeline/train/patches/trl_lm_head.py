"""Patch trl: its fused LM head scores only the loss-carrying positions on CPU too, with a lean CPU kernel.

trl's SFTTrainer computes the loss through a fused, chunked LM head (trl.trainer.utils.add_fused_lm_head).
On CUDA/XPU it projects only the positions whose label is not -100; on every other device (CPU included)
it projects all positions and zeroes the ignored ones afterwards, because on compiling backends (Neuron)
a varying number of rows would recompile the tiles every batch. Eager CPU has no such cost, and with
assistant-only loss about half of the positions carry no loss: the LM head (vocab 49152 x hidden 576 on
SmolLM2, ~20% of the forward FLOPs, run three times per step by the chunked backward) then does twice the
work it needs. `trained_positions_only()` makes trl take its own compact path on CPU too, and hands
the scoring to pipeline.train.cpu_head (trl's CPU fallback kernel walks every logit tile many times). The loss,
the gradients and the logged metrics are the same (tests/unit/train/test_sft.py, test_cpu_head.py).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

from pipeline.train.patches.registry import record, turned_off

LIBRARY = "trl"


def canary() -> str | None:
    """None while trl still has the hooks this patch relies on; else what changed."""
    import trl.trainer.utils as trl_utils

    if not callable(getattr(trl_utils, "_use_triton", None)):
        return "trl.trainer.utils._use_triton is gone"
    if getattr(trl_utils, "_ChunkedLogProbFunction", None) is None:
        return "trl.trainer.utils._ChunkedLogProbFunction is gone"
    try:
        source = inspect.getsource(trl_utils.add_fused_lm_head)
    except (AttributeError, OSError, TypeError):  # renamed, or installed without its .py sources
        return "trl.trainer.utils.add_fused_lm_head cannot be read"
    if "compact = _use_triton(" not in source:
        return "add_fused_lm_head no longer picks compact rows through _use_triton"
    if "_ChunkedLogProbFunction.apply(" not in source:
        return "add_fused_lm_head no longer calls _ChunkedLogProbFunction.apply"
    return None


@contextlib.contextmanager
def trained_positions_only(enabled: bool = True, lean_cpu_kernel: bool = True) -> Iterator[bool]:
    """While the block runs, trl's fused LM head scores only loss-carrying positions on CPU (enabled) or all
    (not); yields whether the compact path is active. trl's module is restored as it was when the block ends.

    With lean_cpu_kernel (and enabled) the CPU scoring itself runs through pipeline.train.cpu_head. When the
    installed trl no longer has the hooks this relies on, it warns, changes nothing and yields False, so a trl
    upgrade can only lose the speed-up, never break training.
    """
    import trl.trainer.utils as trl_utils

    problem = canary()
    if problem is not None:
        if enabled:
            turned_off("compact_lm_head", LIBRARY, problem, "the LM head scores every position on CPU")
        yield False
        return
    saved = (trl_utils._use_triton, trl_utils._ChunkedLogProbFunction)
    original = saved[0]

    def use_compact_rows(device: Any) -> bool:
        # In trl.trainer.utils this only picks compact vs all rows; the kernel module keeps its own reference.
        return device.type == "cpu" or original(device)

    if enabled:
        trl_utils._use_triton = use_compact_rows
    lean = enabled and lean_cpu_kernel
    if lean:
        from pipeline.train.cpu_head import CpuLogProbs

        CpuLogProbs.original = saved[1]
        trl_utils._ChunkedLogProbFunction = CpuLogProbs
    record("compact_lm_head", enabled)
    record("lean_cpu_head", lean)
    try:
        yield enabled
    finally:
        trl_utils._use_triton, trl_utils._ChunkedLogProbFunction = saved
