"""The CLI shows library drift: a deprecation trl, transformers, peft or accelerate raise about our calls (or inside
themselves) appears once, as one line; `-v` shows every module's. Logs stay quiet either way."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from pipeline.cli.app import LIBRARY_LOGGERS, VERBOSE_ENV

# Our call of trl with a setting trl deprecated, as a module of ours makes it (trl points its warning at it).
OUR_CALL = """
from trl import SFTConfig

def build(folder):
    return SFTConfig(
        output_dir=folder, loss_type="chunked_nll", report_to="none", use_cpu=True, activation_checkpointing=False
    )
"""
TRL_LINE = (
    "warning: FutureWarning: `loss_type='chunked_nll'` is deprecated and will be removed in v2.0.0. Use "
    "`loss_type='nll'` (the default), which computes the loss the same way, without materializing the full "
    "logits. (pipeline/train/probe.py:5)"
)
ACCELERATE_LINE = (
    "warning: FutureWarning: FP8RecipeKwargs is deprecated and will be removed in Accelerate v2.0.0."
)


@pytest.fixture
def drifting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pipeline recipes` made to run into deprecations, each twice: ours (trl about our call), accelerate's
    inside accelerate, one no call of ours can change, and one of a library we do not drive."""
    import pipeline.config.loader as loader

    module: dict[str, Any] = {"__name__": "pipeline.train.probe"}
    exec(compile(OUR_CALL, "pipeline/train/probe.py", "exec"), module)

    def listing() -> list[Path]:
        from accelerate.utils import FP8RecipeKwargs

        for _ in range(2):
            module["build"](str(tmp_path / "out"))
            with contextlib.suppress(ImportError):  # it warns, then finds no FP8 backend on this machine
                FP8RecipeKwargs(backend="te")
            warnings.warn_explicit(
                "`is_gradient_checkpointing` is deprecated and will be removed in v6.",
                FutureWarning,
                "transformers/modeling_utils.py",
                3313,
                module="transformers.modeling_utils",
            )
            warnings.warn_explicit("old API", DeprecationWarning, "otherlib/api.py", 7, module="otherlib.api")
        return []

    monkeypatch.setattr(loader, "list_recipe_files", listing)
    monkeypatch.setattr(warnings, "onceregistry", {})  # "once" means once per process; each test is one
    monkeypatch.setenv(VERBOSE_ENV, "")  # -v sets it for launched ranks; restored after the test
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


def test_a_deprecation_about_our_calls_is_one_line_once(
    drifting: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["recipes"], monkeypatch, capsys)
    assert code == 0, err
    lines = _warning_lines(err)
    assert len(lines) == 2, err
    assert lines[0] == TRL_LINE
    assert lines[1].startswith(ACCELERATE_LINE) and lines[1].endswith(")")
    assert "(accelerate/utils/dataclasses.py:" in lines[1]
    assert "Traceback" not in err and "warnings.warn(" not in err  # no source line under the warning
    assert logging.getLogger("transformers").level == logging.ERROR  # logs stay quiet


def test_verbose_shows_every_deprecation_once(
    drifting: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    code, err = run_cli(["-v", "recipes"], monkeypatch, capsys)
    assert code == 0, err
    lines = _warning_lines(err)
    assert lines[0] == TRL_LINE and lines[1].startswith(ACCELERATE_LINE)
    assert lines[2:] == [
        "warning: FutureWarning: `is_gradient_checkpointing` is deprecated and will be removed in v6. "
        "(transformers/modeling_utils.py:3313)",
        "warning: DeprecationWarning: old API (otherlib/api.py:7)",
    ]
    assert logging.getLogger("transformers").level == logging.WARNING
    assert os.environ[VERBOSE_ENV] == "1"  # what the ranks of `finetune --launch` inherit
