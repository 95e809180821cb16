"""Run folders read as typed records: today's files, the format written before the typed record, live events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.errors import RecipeError
from pipeline.runs.events import EVENTS, EventLog, Finished, Prepared, Started, Step, read_events
from pipeline.runs.metrics import Metrics, check_metrics
from pipeline.runs.record import RunRecord

# A real run folder of `pipeline finetune lora-small train.max_steps=3` written before the typed record
# (manifest `format: 1`, metrics `schema_version: 1`, no events.jsonl); adapter weights left out.
LEGACY = Path(__file__).resolve().parents[2] / "data" / "runs" / "lora-small-20261207-223402"


def test_a_run_folder_of_the_first_format_reads_as_typed_records() -> None:
    run = RunRecord.load(LEGACY)
    assert run.name == "lora-small" and run.state == "finished" and run.events == []
    manifest, metrics = run.manifest, run.metrics
    assert manifest is not None and metrics is not None
    assert manifest.schema_version == 1 and manifest.model.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert manifest.tokenizer.class_name == "TokenizersBackend" and manifest.environment.world_size == 1
    assert [f.split for f in manifest.data.files] == ["train", "eval"]
    assert manifest.speed_levers is not None and manifest.speed_levers["compact_lm_head"] == "on"
    assert metrics.schema_version == 1 and metrics.train is not None and metrics.train.steps == 3
    assert metrics.adapted is not None and metrics.base is not None
    assert metrics.adapted.perplexity == pytest.approx(6.852193279980342)
    assert metrics.comparison is not None and metrics.comparison.deltas["perplexity"] < 0
    headline = metrics.headline()
    assert headline["base_perplexity"] == pytest.approx(9.942888242751568)
    raw = json.loads((LEGACY / "metrics.json").read_text())
    assert metrics.as_dict() == raw  # nothing dropped or renamed on the way through the record
    model = run.model_spec()
    assert model is not None and model.name == manifest.model.name
    assert run.system_prompt() and "Python standard library" in run.system_prompt()


def test_a_folder_that_is_not_a_run_and_unreadable_files_stop_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"not a run folder \(no recipe.yaml, manifest.json or metrics.json\)"):
        RunRecord.load(tmp_path)
    shutil.copytree(LEGACY, tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics["train"]["steps"] = "three"
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RecipeError, match=r"metrics.json: train.steps: Input should be a valid integer"):
        RunRecord.load(tmp_path / "run")


def test_metrics_that_do_not_fit_the_record_are_refused_before_writing(tmp_path: Path) -> None:
    good = json.loads((LEGACY / "metrics.json").read_text())
    check_metrics(good, tmp_path / "metrics.json")
    good["adapted"]["perplexity"] = "low"
    with pytest.raises(ValueError, match=r"metrics.json: adapted.perplexity: Input should be a valid number"):
        check_metrics(good, tmp_path / "metrics.json")
    newer = {**json.loads((LEGACY / "metrics.json").read_text()), "judge": {"win_rate": 0.6}}
    assert Metrics.model_validate(newer).as_dict()["judge"] == {"win_rate": 0.6}  # newer keys are kept


def test_events_are_appended_as_they_happen_and_read_back_typed(tmp_path: Path) -> None:
    seen: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("a viewer's bug")

    log = EventLog([seen.append, broken])
    log.emit(Prepared(recipe="tiny", stage="sft", run_dir=str(tmp_path), train_examples=None, eval_examples=0))
    log.write_to(tmp_path)  # events before the run folder exists reach the callbacks only
    log.emit(Started(step=0, total_steps=2))
    assert len((tmp_path / EVENTS).read_text().splitlines()) == 1  # on disk at once, not at the end
    log.emit(Step(step=1, total_steps=2, loss=2.5, learning_rate=1e-3))
    with (tmp_path / EVENTS).open("a") as handle:
        handle.write('{"kind": "step", "step": 2, "total_st')  # the writer is mid-line
    events = read_events(tmp_path)
    assert [e.kind for e in events] == ["started", "step"] and events[1].loss == 2.5
    assert [e.kind for e in seen] == ["prepared", "started", "step"]  # the broken callback was dropped
    assert log.last_step == 1
    (tmp_path / "recipe.yaml").write_text("model: {name: tiny}\n")
    assert RunRecord.load(tmp_path).state == "running"
    path = tmp_path / EVENTS
    path.write_text(path.read_text().rsplit("\n", 1)[0] + "\n")  # the writer finished its line
    log.emit(Finished(seconds=3.0, metrics={"train_loss": 2.5}))
    assert RunRecord.load(tmp_path).state == "finished"
