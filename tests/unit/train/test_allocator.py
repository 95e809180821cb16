"""pipeline.train.allocator: freed buffers stay in the process, so a step's reallocations fault no pages in."""

from __future__ import annotations

import platform
import subprocess
import sys
from typing import Any

import pytest

# A 64 MiB buffer allocated, touched and freed per "step": above glibc's largest automatic mmap threshold
# (32 MiB), so by default each is a fresh mapping whose 16,384 pages fault in when touched; kept, a step
# reuses freed heap (a few steps still grow the heap while freed chunks coalesce).
SCRIPT = """
import resource, sys, torch
from pipeline.train.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():
    buffer = torch.ones(2**24)
    return float(buffer.sum())
step()
before = faults()
for _ in range(20):
    step()
print((faults() - before) / 20)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_reallocated_buffers_fault_no_pages_in() -> None:
    """Default glibc: 16k page faults per step's 64 MiB buffer; with keep_freed_memory under a third of that."""

    def faults_per_buffer(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=120
        )
        return float(run.stdout.split()[-1])

    default = faults_per_buffer("default")
    assert default > 10_000
    assert faults_per_buffer("keep") < default / 3


@pytest.mark.parametrize("keep", [True, False])
def test_cpu_training_follows_the_recipe_switch(
    keep: bool, tiny_trainer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stages.build_trainer keeps freed memory for a CPU run unless train.keep_freed_memory is false."""
    import pipeline.train.allocator as allocator

    calls: list[int] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    tiny_trainer(keep_freed_memory=keep)
    assert calls == ([1] if keep else [])
