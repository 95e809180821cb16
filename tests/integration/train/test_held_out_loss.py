"""train.eval_steps: the held-out loss during training (same masks as training), its curve in the report,
early stopping on it, and the trackers writing under the run folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune


def _metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))


def test_eval_steps_log_the_held_out_loss_and_plot_it(make_recipe: Any) -> None:
    recipe = load_recipe(
        str(
            make_recipe(
                train={"max_steps": 4, "eval_steps": 2, "report_to": ["tensorboard"], "learning_rate": 0.01},
                eval={"generate_examples": 0, "samples": 0},
            )
        )
    )
    run = finetune(recipe)
    history = run.metrics["train"]["log_history"]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    assert [step for step, _ in evals] == [2, 4]
    assert all(0 < loss < 20 for _, loss in evals)
    # the last held-out loss is the adapted model's NLL on the same eval records (the final evaluation scores
    # them untruncated; the tiny records fit train.max_length, so both see the same tokens)
    assert evals[-1][1] == pytest.approx(run.metrics["adapted"]["nll"], rel=0.05)
    report = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert "eval loss" in report or "data:image/png" in report
    events = list((run.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "tensorboard wrote no event file under the run folder"


def test_early_stopping_keeps_the_best_checkpoint(make_recipe: Any) -> None:
    # A threshold no step can meet: the first evaluation sets the best loss, the next one does not improve
    # on it by 10 nats, and patience 1 stops the run there instead of at max_steps.
    recipe = load_recipe(
        str(
            make_recipe(
                train={
                    "max_steps": 30,
                    "eval_steps": 2,
                    "save_steps": 2,
                    "early_stopping_patience": 1,
                    "early_stopping_threshold": 10.0,
                    "report_to": ["none"],
                },
                eval={"enabled": False},
            )
        )
    )
    run = finetune(recipe)
    train = run.metrics["train"]
    assert train["steps"] == 4 and train["stopped_early"] is True
    evals = {h["step"]: h["eval_loss"] for h in train["log_history"] if "eval_loss" in h}
    best_step = min(evals, key=evals.__getitem__)
    assert train["best_checkpoint"] == f"checkpoint-{best_step}"
    assert train["best_eval_loss"] == pytest.approx(evals[best_step])
    assert (run.run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_long_eval_answers_do_not_stop_a_run_without_eval_steps(make_recipe: Any, tmp_path: Path) -> None:
    """Evaluation after training scores untruncated windows, so eval answers past max_length are fine."""
    from conftest import write_jsonl

    question = {"role": "user", "content": "Say a lot."}
    answer = {"role": "assistant", "content": " ".join(["word"] * 200)}
    eval_file = write_jsonl(tmp_path / "long-eval.jsonl", [{"messages": [question, answer]}] * 2)
    recipe = load_recipe(
        str(
            make_recipe(
                data={"eval": str(eval_file)},
                train={"max_steps": 1, "max_length": 32},
                eval={"generate_examples": 0, "samples": 0},
            )
        )
    )
    run = finetune(recipe)
    assert run.metrics["adapted"]["nll"] > 0
