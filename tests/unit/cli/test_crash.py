"""An unexpected exception (a bug) reaches the user as one line naming the log file with its traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

import pipeline.config.loader as loader


def test_internal_error_is_one_line_and_a_log_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(loader, "load_recipe", broken)
    monkeypatch.delenv("PIPELINE_TRACEBACK", raising=False)
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    code, err = run_cli(["validate", "lora-small"], monkeypatch, capsys)
    assert code == 70
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: internal error (RuntimeError: something nobody expected); this is a bug in pipeline"
    )
    logs = list((tmp_path / "cache" / "crashes").glob("*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text(encoding="utf-8")
    assert "command: pipeline validate lora-small" in text
    assert "Traceback (most recent call last)" in text and "in broken" in text


def test_developers_get_the_traceback_with_pipeline_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(loader, "load_recipe", lambda *a, **k: 1 / 0)
    monkeypatch.setenv("PIPELINE_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        run_cli(["validate", "lora-small"], monkeypatch, capsys)


def test_the_log_never_holds_an_api_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli.crash import write_crash_log

    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    log = write_crash_log(ValueError("x"), ["serve", "run", "--api-key", "sk-secret", "--api-key=sk-other"])
    text = log.read_text(encoding="utf-8")
    assert "sk-secret" not in text and "sk-other" not in text
    assert "command: pipeline serve run --api-key *** --api-key=***" in text
