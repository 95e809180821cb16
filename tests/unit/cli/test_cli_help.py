"""Every CLI command (and sub-command) answers --help with exit code 0."""

from __future__ import annotations

import typer
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.cli.app import app


def _command_paths(
    command: typer.core.TyperGroup | object, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    runner = CliRunner()
    paths = _command_paths(get_command(app))
    assert ("finetune",) in paths and ("validate",) in paths and ("recipes",) in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"pipeline {' '.join(path)} --help failed: {result.output}"
        assert "Usage" in result.output


def test_recipes_lists_lora_small() -> None:
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0
    assert "lora-small" in result.output
