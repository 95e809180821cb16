"""finetune(recipe, callbacks=..., stop=...): typed events reach callbacks and events.jsonl as they happen; a stop
request checkpoints and ends the run as Ctrl-C does; a failure is reported in one line."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.errors import TrainingError
from pipeline.runs.events import EVENTS, Step, read_events
from pipeline.runs.record import RunRecord
from pipeline.train.signals import Interrupted
from pipeline.workflow import finetune


def test_a_run_reports_every_phase_live_to_callbacks_and_its_event_log(make_recipe: Any) -> None:
    recipe = load_recipe(
        str(make_recipe(train={"max_steps": 4, "logging_steps": 2, "save_steps": 2})),
        ["eval.generate_examples=1"],
    )
    seen: list[Any] = []
    on_disk: list[int] = []

    def watch(event: Any) -> None:
        seen.append(event)
        if isinstance(event, Step):  # already in events.jsonl when a callback hears of it
            run_dir = Path(seen[0].run_dir)
            on_disk.append(json.loads((run_dir / EVENTS).read_text().splitlines()[-1])["step"])

    run = finetune(recipe, callbacks=[watch])
    kinds = [e.kind for e in seen]
    assert kinds[:3] == ["prepared", "evaluation", "started"] and kinds[-2:] == ["evaluation", "finished"]
    steps = [e for e in seen if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4] and on_disk == [1, 2, 3, 4]
    logged = {e.step: e.loss for e in steps if e.loss is not None}
    history = {h["step"]: h["loss"] for h in run.metrics["train"]["log_history"] if "loss" in h}
    assert logged == pytest.approx(history) and set(logged) == {1, 2, 4}  # logging_first_step, then every 2
    assert all(e.learning_rate is not None and e.grad_norm is not None for e in steps if e.loss is not None)
    assert steps[-1].seconds_left == pytest.approx(0.0) and steps[-1].tokens_per_second > 0
    assert [e.step for e in seen if e.kind == "checkpoint"] == [2, 4]
    base, adapted = (e for e in seen if e.kind == "evaluation")
    assert (base.phase, adapted.phase) == ("base", "adapted")
    assert adapted.metrics["perplexity"] == pytest.approx(run.metrics["adapted"]["perplexity"])
    assert seen[-1].metrics["adapted_perplexity"] == pytest.approx(run.metrics["adapted"]["perplexity"])
    record = RunRecord.load(run.run_dir)
    assert record.state == "finished" and [e.model_dump() for e in record.events] == [
        e.model_dump() for e in seen
    ]


def test_a_stop_request_checkpoints_and_the_run_resumes(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(train={"max_steps": 4, "save_steps": 100})), ["eval.enabled=false"])
    stop = threading.Event()

    def stop_after_first_step(event: Any) -> None:
        if event.kind == "step":  # heard after step 1 ended: step 2 is the one that finishes
            stop.set()

    stopped = r"^stop requested: training stopped at step 2 and saved checkpoint-2"
    with pytest.raises(Interrupted, match=stopped) as caught:
        finetune(recipe, callbacks=[stop_after_first_step], stop=stop)
    assert caught.value.exit_code == 130
    (run_dir,) = Path(recipe.train.output_dir).iterdir()
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    record = RunRecord.load(run_dir)
    assert record.state == "stopped" and record.events[-1].step == 2
    assert "resume with: " in record.events[-1].message

    resumed = finetune(recipe, resume=str(run_dir))
    assert resumed.run_dir == run_dir and resumed.metrics["train"]["steps"] == 4
    kinds = [e.kind for e in read_events(run_dir)]
    assert kinds.count("prepared") == 2 and kinds[-1] == "finished"
    started = [e for e in read_events(run_dir) if e.kind == "started"]
    assert [e.step for e in started] == [0, 2]
    assert RunRecord.load(run_dir).state == "finished"


def test_a_failure_after_the_run_folder_opened_is_its_last_event(
    make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.workflow

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise TrainingError("the loss became NaN at step 2; lower train.learning_rate")

    monkeypatch.setattr(pipeline.workflow, "train_model", fail)
    recipe = load_recipe(str(make_recipe()), ["eval.enabled=false"])
    seen: list[Any] = []
    with pytest.raises(TrainingError):
        finetune(recipe, callbacks=[seen.append])
    (run_dir,) = Path(recipe.train.output_dir).iterdir()
    last = read_events(run_dir)[-1]
    assert last.kind == "failed" and last.error.startswith("the loss became NaN at step 2")
    assert last.exit_code == TrainingError("").exit_code and seen[-1] == last
    assert RunRecord.load(run_dir).state == "failed"
