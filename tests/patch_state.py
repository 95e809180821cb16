"""What the speed levers change in libraries while a trainer trains, and whether any of it was left behind.

Every lever is scoped (pipeline.train.stages.mixin): after a block ends, trl's module, peft's LoRA layer,
the attention kernel switch and glibc's malloc thresholds are as a fresh process has them. conftest.py's
autouse fixture fails any test that leaves one changed; only modules already imported are looked at.
"""

from __future__ import annotations

import sys


def leaked_patches() -> list[str]:
    """Names of the library globals a lever changed and did not put back (empty when all are pristine)."""
    leaked = []
    trl_utils = sys.modules.get("trl.trainer.utils")
    if trl_utils is not None:
        for name in ("_use_triton", "_ChunkedLogProbFunction"):
            value = getattr(trl_utils, name, None)
            if value is not None and not getattr(value, "__module__", "").startswith("trl."):
                leaked.append(f"trl.trainer.utils.{name} is {value!r}")
    lora = sys.modules.get("peft.tuners.lora.layer")
    if lora is not None:
        forward = lora.Linear.__dict__.get("forward")
        if forward is None or not forward.__module__.startswith("peft."):
            leaked.append("peft.tuners.lora.layer.Linear.forward is not peft's")
    attention = sys.modules.get("pipeline.train.attention")
    if attention is not None and attention._SHORT_KERNEL["enabled"] is not True:
        leaked.append("pipeline.train.attention: the short-example kernel is switched off")
    allocator = sys.modules.get("pipeline.train.allocator")
    if allocator is not None and allocator.keeps_freed_memory():
        leaked.append("glibc malloc thresholds still raised (pipeline.train.allocator)")
    return leaked
