"""A launched rank tears its process groups down before the interpreter exits, on errors too: left to torch's
native teardown at exit, a live gloo group now and then aborted the rank (exit 134 instead of the run's code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist
from conftest import run_cli


def test_the_cli_destroys_the_process_group_when_a_command_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        code, err = run_cli(["validate", str(tmp_path / "missing.yaml")], monkeypatch, capsys)
        assert code != 0 and err.startswith("error: ")
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
