"""The ledger's cache: a run folder is re-read only when its files change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from studio_runs import write_run

from pipeline.runs.events import EventLog, Step
from pipeline.studio import runs_index
from pipeline.studio.runs_index import RunsIndex


def test_summaries_are_cached_until_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_run(tmp_path, "lora-small-20261201-000000", [2.0, 1.0], end=False)
    index = RunsIndex(tmp_path)
    calls = []
    real = runs_index.summarize
    monkeypatch.setattr(runs_index, "summarize", lambda record: calls.append(1) or real(record))
    first = index.summaries()
    assert first[0].state == "running" and first[0].step == 2
    index.summaries()
    assert len(calls) == 1
    log = EventLog()
    log.write_to(folder)
    log.emit(Step(step=3, total_steps=3, loss=0.5))
    later = index.summaries()
    assert len(calls) == 2 and later[0].step == 3 and later[0].loss == 0.5


def test_folders_that_are_not_runs_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    (tmp_path / ".studio").mkdir()
    write_run(tmp_path, "a-20261201-000000", [1.0])
    assert [s.folder for s in RunsIndex(tmp_path).summaries()] == ["a-20261201-000000"]
    assert RunsIndex(tmp_path / "missing").summaries() == []


def test_a_removed_run_leaves_the_ledger(tmp_path: Path) -> None:
    folder = write_run(tmp_path, "a-20261201-000000", [1.0])
    index = RunsIndex(tmp_path)
    assert len(index.summaries()) == 1
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    os.rmdir(folder)
    assert index.summaries() == []
