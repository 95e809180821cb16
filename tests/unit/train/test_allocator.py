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
from pipeline.train.allocator import keeping_freed_memory
block = keeping_freed_memory(sys.argv[1] in ("keep", "after"))
assert block.__enter__() is (sys.argv[1] in ("keep", "after"))
if sys.argv[1] == "after":  # the block ended: glibc's thresholds are back
    block.__exit__(None, None, None)
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
def test_reallocated_buffers_fault_no_pages_in_while_kept() -> None:
    """Default glibc: 16k page faults per step's 64 MiB buffer; inside keeping_freed_memory under a third of
    that; after the block as many as by default."""

    def faults_per_buffer(mode: str) -> float:
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, timeout=120
        )
        return float(run.stdout.split()[-1])

    default = faults_per_buffer("default")
    assert default > 10_000
    assert faults_per_buffer("keep") < default / 3
    assert faults_per_buffer("after") > default * 0.9


@pytest.mark.parametrize("keep", [True, False])
def test_cpu_training_follows_the_recipe_switch(keep: bool, tiny_trainer: Any) -> None:
    """A CPU trainer keeps freed memory while it trains unless train.keep_freed_memory is false; not after."""
    from transformers import TrainerCallback

    from pipeline.train.allocator import keeps_freed_memory

    seen: list[bool] = []

    class Probe(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen.append(keeps_freed_memory())

    trainer = tiny_trainer(keep_freed_memory=keep, max_steps=2)
    trainer.add_callback(Probe())
    assert not keeps_freed_memory()
    trainer.train()
    assert seen == [keep, keep]
    assert not keeps_freed_memory()
