"""Progress a person sees: on a non-terminal, one line per interval with the count and records/s, and a final
line with the time taken; nothing for a phase shorter than the delay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, write_jsonl

import pipeline.data.progress
from pipeline.config.loader import load_recipe
from pipeline.data.progress import counted
from pipeline.data.splits import load_splits


def test_quick_phases_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(counted(range(1000), "Reading")) == list(range(1000))
    assert capsys.readouterr().err == ""


def test_a_long_phase_prints_counts_and_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], make_recipe: Any
) -> None:
    monkeypatch.setattr(pipeline.data.progress, "DELAY_S", 0.0)
    monkeypatch.setattr(pipeline.data.progress, "LINE_EVERY_S", 0.0)
    train = write_jsonl(tmp_path / "many.jsonl", [{"messages": m} for m in CONVERSATIONS * 5])
    load_splits(load_recipe(str(make_recipe()), [f"data.train={train}", "data.eval_size=0"]).data)
    lines = [line for line in capsys.readouterr().err.splitlines() if str(train) in line]
    count = len(CONVERSATIONS) * 5
    assert lines[0].startswith(f"Reading and validating {train}: 1 records (") and "records/s)" in lines[0]
    assert lines[-1].startswith(f"Reading and validating {train}: {count} records (") and " s" in lines[-1]
    assert len(lines) == count + 1  # one per record at a zero interval, then the final line
