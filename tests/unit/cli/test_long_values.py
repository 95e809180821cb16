"""An argument longer than any file name (a long system prompt as an override) is read as a value, never tried as
a path until the file system refuses it (OSError: File name too long)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from pipeline.files import path_exists

LONG = "Answer as a careful assistant. " * 10  # 310 characters: over the 255 a file name may have


def test_a_long_override_value_is_a_value(
    make_recipe: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = str(make_recipe())
    code, err = run_cli(["validate", recipe, f"data.system_prompt={LONG}"], monkeypatch, capsys)
    assert code == 0, err
    assert "error" not in err


def test_a_recipe_name_too_long_for_a_file_is_not_found(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{'x' * 300}.yaml"
    code, err = run_cli(["validate", name], monkeypatch, capsys)
    assert code != 0
    assert err.strip().splitlines() == [
        f"error: {name}: recipe file not found; `pipeline recipes` lists the available ones."
    ]


def test_path_exists_answers_for_names_no_path_can_have(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("x: 1\n")
    assert path_exists(tmp_path) and path_exists(tmp_path, "dir") and not path_exists(tmp_path, "file")
    assert path_exists(tmp_path / "a.yaml", "file") and not path_exists(tmp_path / "a.yaml", "dir")
    assert not path_exists(tmp_path / "missing")
    for kind in ("any", "file", "dir"):
        assert path_exists(tmp_path / ("y" * 300), kind) is False  # pathlib raises OSError here
    with pytest.raises(OSError, match="File name too long"):
        (tmp_path / ("y" * 300)).exists()  # why path_exists exists: pathlib does not answer False
