"""Keep freed memory in the process while training on CPU, instead of handing it back to the kernel.

glibc's malloc serves every allocation above its mmap threshold (128 KiB, rising with use up to 32 MiB) with
a fresh mapping and unmaps it when freed, and trims the heap top back to the kernel. A training step frees
and reallocates the same activation, gradient and logit buffers every step, so each step faults all of them
in again: ~30,000 page faults per lora-small step on 2 cores, none with the thresholds raised: 1.10x per
lora-small run for 35 MB more peak RSS (up to 0.5 GB more with 4,096-token rows, whose varying shapes
fragment the kept memory; bench/RESULTS.md). PyTorch's CPU allocator has no cache of its own; jemalloc or
tcmalloc preloaded do the same job for users who have them. The thresholds are raised only while a trainer
trains (pipeline.train.stages.mixin) and set back afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
from collections.abc import Iterator

from pipeline.train.patches.registry import record

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Buffers below this come from the heap and are reused; above it (a layer's weights on large models) mapped.
_THRESHOLD_BYTES = 1 << 30
# What the thresholds go back to. mallopt cannot switch glibc's sliding thresholds back on, so they are set
# where the sliding ones end up once a large buffer has been freed (64-bit glibc: the mmap threshold grows to
# at most 32 MiB, the trim threshold to twice the mmap threshold).
_RESTORED_MMAP_BYTES = 32 << 20
_RESTORED_TRIM_BYTES = 64 << 20
_KEPT = {"depth": 0}  # nesting depth of keeping_freed_memory blocks in this process


@contextlib.contextmanager
def keeping_freed_memory(active: bool = True) -> Iterator[bool]:
    """While the block runs (and active), glibc keeps freed memory in the process; yields whether it does.

    The thresholds go back when the outermost block ends; where the C library is not glibc nothing changes."""
    applied = active and (_KEPT["depth"] > 0 or _set_thresholds(_THRESHOLD_BYTES, _THRESHOLD_BYTES))
    record("keep_freed_memory", applied, "" if applied or not active else "not glibc, or mallopt refused")
    if not applied:
        yield False
        return
    _KEPT["depth"] += 1
    try:
        yield True
    finally:
        _KEPT["depth"] -= 1
        if _KEPT["depth"] == 0:
            _set_thresholds(_RESTORED_MMAP_BYTES, _RESTORED_TRIM_BYTES)


def keeps_freed_memory() -> bool:
    """True while a keeping_freed_memory block is active in this process."""
    return _KEPT["depth"] > 0


def _set_thresholds(mmap_bytes: int, trim_bytes: int) -> bool:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # The mmap threshold first: a trim threshold alone would also freeze the mmap threshold at 128 KiB,
    # mapping every larger buffer afresh (2x slower steps, measured).
    if not mallopt(_M_MMAP_THRESHOLD, mmap_bytes):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_bytes))
