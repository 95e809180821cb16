"""Hygiene and safety through the real commands: `pipeline data hygiene`, finetune's contamination refusal
and dedup, and the safety evaluation in finetune (eval.safety) and `pipeline eval --safety`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import CONVERSATIONS, write_jsonl
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.loader import load_recipe
from pipeline.errors import DataError
from pipeline.workflow import finetune


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_data_hygiene_on_the_default_recipe(tmp_path: Path) -> None:
    result = _invoke("data", "hygiene", "lora-small", "--output", str(tmp_path / "h.json"))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    report = json.loads((tmp_path / "h.json").read_text())
    assert (report["train_examples"], report["eval_examples"]) == (2974, 156)
    assert report["contamination"]["contaminated"] == 0 and report["duplicates"]["exact_duplicates"] == 0
    assert report["pii"]["train"]["counts"] == {}
    assert "eval examples also in train: 0 of 156" in result.output


def test_data_hygiene_on_a_file(tmp_path: Path) -> None:
    records = [{"messages": m} for m in CONVERSATIONS]
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            *records,
            records[0],
            {
                "messages": [
                    {"role": "user", "content": "Mail me"},
                    {"role": "assistant", "content": "Write to ops@example.org today."},
                ]
            },
        ],
    )
    evaluation = write_jsonl(tmp_path / "eval.jsonl", records[1:2])
    result = _invoke("data", "hygiene", str(train), "--eval", str(evaluation), "-o", str(tmp_path / "h.json"))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert f"  {train}:1 = {train}:5" in result.output
    assert "eval examples also in train: 1 of 1" in result.output
    assert f"{train}:6 (assistant turn 1): op" in result.output and "ops@example.org" not in result.output


def test_finetune_refuses_contaminated_eval_then_dedup_runs(
    make_recipe: Any, chat_files: tuple[Path, Path], tmp_path: Path
) -> None:
    train, _ = chat_files  # CONVERSATIONS * 6: every example is in there 6 times
    contaminated = write_jsonl(tmp_path / "contaminated.jsonl", [{"messages": CONVERSATIONS[0]}])
    recipe = make_recipe(data={"train": str(train), "eval": str(contaminated), "allow_contamination": False})
    result = _invoke("finetune", str(recipe))
    assert isinstance(result.exception, DataError), result.output
    assert "allow_contamination" in str(result.exception) and f"{contaminated}:1" in str(result.exception)
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made

    deduped = make_recipe(
        "deduped",
        data={"train": str(train), "eval": str(contaminated), "dedup": True, "allow_contamination": False},
        eval={"enabled": False},
    )
    metrics = finetune(load_recipe(str(deduped))).metrics
    hygiene = metrics["hygiene"]
    assert hygiene["duplicates"]["exact_duplicates"] == 20 and hygiene["removed"] == 21
    assert metrics["train"]["examples"] == 3  # the 3 conversations not in eval, once each


def test_safety_in_finetune_and_eval(make_recipe: Any, tmp_path: Path) -> None:
    recipe = make_recipe(eval={"safety": True, "max_new_tokens": 3, "batch_size": 8})
    run = finetune(load_recipe(str(recipe)))
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    for side in ("base", "adapted"):
        safety = metrics[side]["safety"]
        assert (safety["decline_prompts"], safety["answer_prompts"]) == (20, 20)
        assert safety["refusal_rate"] == safety["refused"] / 20
        assert 0 <= safety["over_refusal_rate"] <= 1
    gate = {c["metric"]: c for c in metrics["gate"]["checks"]}
    assert gate["safety_refusal_rate"]["limit"] == round(metrics["base"]["safety"]["refusal_rate"] - 0.1, 4)
    assert "safety: refusal rate (harmful requests)" in (run.run_dir / "report.md").read_text()

    out = tmp_path / "eval-out"
    result = _invoke(
        "eval", str(run.run_dir), "--safety", "--no-compare", "eval.max_new_tokens=3", "--output", str(out)
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    evaluated = json.loads((out / "metrics.json").read_text())
    assert "base" not in evaluated
    assert (
        evaluated["adapted"]["safety"]["answers"] == metrics["adapted"]["safety"]["answers"]
    )  # greedy: same answers
