"""Training speed levers that need code rather than a trl/transformers setting.

trl's SFTTrainer computes the loss through a fused, chunked LM head (trl.trainer.utils.add_fused_lm_head).
On CUDA/XPU it projects only the positions whose label is not -100; on every other device (CPU included)
it projects all positions and zeroes the ignored ones afterwards, because on compiling backends (Neuron)
a varying number of rows would recompile the tiles every batch. Eager CPU has no such cost, and with
assistant-only loss about half of the positions carry no loss: the LM head (vocab 49152 x hidden 576 on
SmolLM2, ~20% of the forward FLOPs, run three times per step by the chunked backward) then does twice the
work it needs. `score_trained_positions_only()` makes trl take its own compact path on CPU too, and hands
the scoring to pipeline.cpu_head (trl's CPU fallback kernel walks every logit tile many times). The loss,
the gradients and the logged metrics are the same (tests/unit/test_training_config.py, test_cpu_head.py).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)

_STATE = {"enabled": False}


def score_trained_positions_only(enabled: bool = True, lean_cpu_kernel: bool = True) -> bool:
    """Make trl's fused LM head score only loss-carrying positions on CPU (enabled) or all (not); True if active.

    With lean_cpu_kernel (and enabled) the CPU scoring itself runs through pipeline.cpu_head. Process-wide:
    the last call wins (pipeline.training.build_trainer calls it with the recipe's train.score_trained_only). Returns False and changes nothing when the installed trl no longer has the
    hook this relies on, so a trl upgrade can only lose the speed-up, never break training.
    """
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    try:
        source = inspect.getsource(trl_utils.add_fused_lm_head)
    except (AttributeError, OSError, TypeError):  # renamed, or installed without its .py sources
        source = ""
    if not callable(current) or "compact = _use_triton(" not in source:
        log.debug("trl.trainer.utils._use_triton is gone; the fused LM head scores every position.")
        return False
    if not hasattr(current, "original"):
        original = current

        def use_compact_rows(device: Any) -> bool:
            # In trl.trainer.utils this only picks compact vs all rows; the kernel module keeps its own reference.
            return (_STATE["enabled"] and device.type == "cpu") or original(device)

        use_compact_rows.original = original  # type: ignore[attr-defined]
        trl_utils._use_triton = use_compact_rows
    _STATE["enabled"] = enabled
    _use_lean_cpu_kernel(
        trl_utils, enabled and lean_cpu_kernel and "_ChunkedLogProbFunction.apply(" in source
    )
    return enabled


def _use_lean_cpu_kernel(trl_utils: Any, enabled: bool) -> None:
    """Route trl's fused-head kernel through pipeline.cpu_head (CPU only; it defers to trl elsewhere)."""
    from pipeline.cpu_head import CpuLogProbs

    current = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if current is None:
        return
    if current is not CpuLogProbs:
        CpuLogProbs.original = current
    trl_utils._ChunkedLogProbFunction = CpuLogProbs if enabled else CpuLogProbs.original
