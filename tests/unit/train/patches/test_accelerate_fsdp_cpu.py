"""accelerate_fsdp_cpu: an FSDP request on CPU processes shards the model (accelerate alone trains DDP)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.train.patches import accelerate_fsdp_cpu, registry

ROOT = Path(__file__).resolve().parents[4]
# One gloo process marked as launched (LOCAL_RANK set): accelerate makes it MULTI_CPU, as each cpu-fsdp.yaml rank.
PROBE = """
import json, os, socket, sys
with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
os.environ["OMP_NUM_THREADS"] = "1"
import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import FullyShardedDataParallelPlugin
from torch.distributed.fsdp import FSDPModule
from pipeline.train.patches.accelerate_fsdp_cpu import fsdp_on_cpu_processes

original = AcceleratorState.__init__
if sys.argv[1] == "on":
    fsdp_on_cpu_processes()
accelerator = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
model, _ = accelerator.prepare(net, torch.optim.SGD(net.parameters(), lr=0.1))
print(json.dumps({
    "type": accelerator.distributed_type.value,
    "partial": PartialState().distributed_type.value,
    "sharded": isinstance(model, FSDPModule),
    "device": accelerator.device.type,
    "restored": AcceleratorState.__init__ is original,
}))
torch.distributed.destroy_process_group()
"""


def _probe(patch: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, patch], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_cpu_process_asked_for_fsdp_shards_with_the_patch_and_not_without() -> None:
    assert _probe("on") == {
        "type": "FSDP",
        "partial": "FSDP",
        "sharded": True,
        "device": "cpu",
        "restored": True,  # accelerate's own __init__ is back once the Trainer's state exists
    }
    plain = _probe("off")  # what accelerate does alone: the FSDP request is ignored
    assert (plain["type"], plain["sharded"], plain["device"]) == ("MULTI_CPU", False, "cpu")


def test_an_accelerate_whose_fsdp_branch_changed_turns_the_patch_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from accelerate.state import AcceleratorState

    original = AcceleratorState.__init__
    monkeypatch.setattr(accelerate_fsdp_cpu, "BRANCH", ("self.fsdp_plugin = fsdp_plugin", "self.sharded = 1"))
    with caplog.at_level(logging.WARNING, logger="pipeline.train.patches.registry"):
        assert accelerate_fsdp_cpu.fsdp_on_cpu_processes() is False
    assert AcceleratorState.__init__ is original
    assert "no longer runs `self.sharded = 1`" in caplog.text
    assert registry.library_version("accelerate") in caplog.text and "trains plain DDP" in caplog.text
    assert registry.active_patches()["fsdp_on_cpu"].startswith("off: accelerate ")


def test_installing_twice_wraps_once_and_restore_puts_accelerates_init_back() -> None:
    from accelerate.state import AcceleratorState

    original = AcceleratorState.__init__
    try:
        assert accelerate_fsdp_cpu.fsdp_on_cpu_processes() is True
        wrapped = AcceleratorState.__init__
        assert wrapped is not original and accelerate_fsdp_cpu.fsdp_on_cpu_processes() is True
        assert AcceleratorState.__init__ is wrapped
        assert accelerate_fsdp_cpu.canary() is None  # read from accelerate's own __init__, not the wrapper
    finally:
        accelerate_fsdp_cpu.restore()
    assert AcceleratorState.__init__ is original
    assert registry.active_patches()["fsdp_on_cpu"] == "on"
