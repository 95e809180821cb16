"""data.streaming trains: the same losses as the whole-split path on the same records, a run folder that says
the data was streamed, and a bad record read by a data-loader worker mid-run stops with its file:line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, run_cli, write_jsonl

import pipeline.data.streaming
from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.workflow import finetune

RECORDS = len(CONVERSATIONS) * 6  # the chat_files train split


def _losses(recipe_path: Path, run_dir: Path) -> tuple[list[float], Any]:
    recipe = load_recipe(str(recipe_path))
    inputs = prepare_inputs(recipe)
    trained = train_model(recipe, run_dir, load_model(recipe), inputs.tokenizer, inputs.training_data)
    return [entry["loss"] for entry in trained.trainer.state.log_history if "loss" in entry], trained


def test_streaming_trains_with_the_losses_of_the_whole_split(make_recipe: Any, tmp_path: Path) -> None:
    # Every step's batch is the whole file (padding-free: one row of all examples), so the order the two
    # paths read it in cannot change a loss beyond rounding.
    train = {"batch_size": RECORDS, "max_steps": 3, "learning_rate": 5e-2}
    whole, _ = _losses(make_recipe("whole", train=train), tmp_path / "whole")
    streamed, trained = _losses(
        make_recipe("streamed", train=train, data={"streaming": True}), tmp_path / "s"
    )
    assert len(whole) == len(streamed) == 3
    assert streamed == pytest.approx(whole, abs=1e-5)
    assert whole[2] < whole[0] - 1e-3  # the steps trained: the losses differ, so equal losses mean something
    assert trained.metrics["examples"] is None and trained.trainer.args.dataloader_num_workers == 1


def test_a_streamed_run_folder_says_so(make_recipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    recipe = load_recipe(str(make_recipe(data={"streaming": True}, eval={"enabled": False})))
    run = finetune(recipe)
    assert "pipeline data hygiene" in caplog.text  # hygiene is a separate pass, named once
    manifest = json.loads((run.run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["records"]["train"] == "streamed"
    (train_file,) = [f for f in manifest["data"]["files"] if f["split"] == "train"]
    assert train_file["streamed"] and train_file["bytes"] > 0 and "sha256" not in train_file
    page = (run.run_dir / "data-audit.html").read_text(encoding="utf-8")
    assert f"the first {RECORDS} examples only" in page
    assert run.metrics["hygiene"]["streamed"] and run.metrics["train"]["steps"] == 3


def test_a_bad_record_read_mid_run_stops_with_its_line(
    make_recipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pipeline.data.streaming, "SAMPLE", 4)  # the check before training reads 4 records
    good = [{"messages": m} for m in CONVERSATIONS]
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}
    path = write_jsonl(tmp_path / "stream" / "bad.jsonl", [*good * 2, bad, *good])
    recipe = make_recipe(
        data={"train": str(path), "streaming": True}, train={"batch_size": 4, "max_steps": 3}
    )
    code, err = run_cli(["finetune", str(recipe)], monkeypatch, capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 3 and "Traceback" not in err, err[-3000:]  # DataError's exit code, raised in a worker
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}:9: messages[1].role must be one of")


def test_the_shipped_streaming_recipe_validates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from pipeline.cli.app import main

    monkeypatch.setattr(sys, "argv", ["pipeline", "validate", "lora-small-streaming"])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code in (0, None), err[-2000:]
    assert "train streamed (its first 256 records checked)" in out and "examples tokenized" not in out
    recipe = load_recipe("lora-small-streaming")
    assert recipe.data.streaming and recipe.train.max_steps > 0 and recipe.data.eval
