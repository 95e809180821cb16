"""`pipeline tokens` on a data file given on the command line and on the default recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.data.adhoc import recipe_for
from pipeline.data.splits import load_splits
from pipeline.models.loading import load_tokenizer
from pipeline.planning.tokens import model_counts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _tokens(*args: str) -> tuple[str, dict[str, Any]]:
    result = CliRunner().invoke(app, ["tokens", *args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    out = Path(args[args.index("--output") + 1])
    assert (out / "tokens.png").read_bytes()[:8] == PNG_MAGIC
    return result.output, json.loads((out / "tokens.json").read_text())


def test_tokens_on_a_file_with_measured_throughput(
    make_recipe: Any, chat_files: tuple[Path, Path], tmp_path: Path
) -> None:
    recipe_path = str(make_recipe(train={"max_length": 40}))
    train_file = str(chat_files[0])
    output, report = _tokens(
        train_file,
        "train.max_steps=5",
        "--recipe",
        recipe_path,
        "--warmup-steps",
        "2",
        "--output",
        str(tmp_path / "out"),
    )
    recipe = recipe_for(train_file, recipe_path)
    expected = model_counts(load_splits(recipe.data).train, load_tokenizer(recipe.model), recipe.train)
    train = report["train"]
    assert train["examples"] == 24 and train["per_example"] == expected["per_example"]
    assert train["above_max_length"] == expected["above_max_length"] > 0
    assert f"above max_length 40: {expected['above_max_length']} " in output
    assert report["api"]["cl100k_base"]["total"] > 0 and report["api"]["o200k_base"]["total"] > 0
    estimate = report["estimate"]
    assert estimate["source"] == "measured" and estimate["measured_steps"] == 1
    assert estimate["steps"] == 5 and estimate["seconds"] == pytest.approx(
        estimate["tokens"] / estimate["tokens_per_second"], rel=0.01, abs=0.01
    )
    assert "tokens/s (measured)" in output


@pytest.mark.slow
def test_tokens_on_the_default_recipe(tmp_path: Path) -> None:
    output, report = _tokens("lora-small", "--tokens-per-second", "500", "--output", str(tmp_path / "out"))
    train = report["train"]
    assert report["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and report["max_length"] == 256
    assert train["examples"] == 2974 and len(train["per_example"]) == 2974
    assert train["distribution"]["min"] <= train["distribution"]["p50"] <= train["distribution"]["max"]
    assert 0 < train["trained_tokens_per_epoch"] < train["tokens_per_epoch"] == sum(train["per_example"])
    assert report["eval"]["examples"] == 156
    for name in ("cl100k_base", "o200k_base"):
        assert len(report["api"][name]["per_example"]) == 2974
    estimate = report["estimate"]
    assert estimate["steps"] == 40 and estimate["examples_per_step"] == 8 and estimate["source"] == "given"
    assert estimate["seconds"] == pytest.approx(estimate["tokens"] / 500, abs=0.1)
    assert "2974 training examples" in output and "cl100k_base:" in output
