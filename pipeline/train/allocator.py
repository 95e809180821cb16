"""Keep freed memory in the process while training on CPU, instead of handing it back to the kernel.

glibc's malloc serves every allocation above its mmap threshold (128 KiB, rising with use up to 32 MiB) with
a fresh mapping and unmaps it when freed, and trims the heap top back to the kernel. A training step frees
and reallocates the same activation, gradient and logit buffers every step, so each step faults all of them
in again: ~30,000 page faults per lora-small step on 2 cores, none with the thresholds raised: 1.10x per
lora-small run for 35 MB more peak RSS (up to 0.5 GB more with 4,096-token rows, whose varying shapes
fragment the kept memory; bench/RESULTS.md). PyTorch's CPU allocator has no cache of its own; jemalloc or
tcmalloc preloaded do the same job for users who have them.
"""

from __future__ import annotations

import ctypes
import platform
import sys

from pipeline.train.patches.registry import record

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Buffers below this come from the heap and are reused; above it (a layer's weights on large models) mapped.
_THRESHOLD_BYTES = 1 << 30
_DONE: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds to 1 GiB for this process; True if they are (now) set.

    Process-wide and idempotent; False (and nothing changed) where the C library is not glibc."""
    if "applied" not in _DONE:
        _DONE["applied"] = _raise_thresholds()
    applied = _DONE["applied"]
    return record("keep_freed_memory", applied, "" if applied else "not glibc, or mallopt refused")


def _raise_thresholds() -> bool:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # The mmap threshold first: a trim threshold alone would also freeze the mmap threshold at 128 KiB,
    # mapping every larger buffer afresh (2x slower steps, measured).
    if not mallopt(_M_MMAP_THRESHOLD, _THRESHOLD_BYTES):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD_BYTES))
