"""Crash and resume through the real CLI in subprocesses: a run stopped by Ctrl-C, then killed with SIGKILL,
then resumed, ends with the same per-step losses and the same adapter as an uninterrupted run (fp32, 1e-6)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

# Runs `python -m pipeline` with one extra Trainer callback that sends `SIGNAL` to the process itself at the
# end of optimizer step `AT_STEP`: a deterministic stand-in for a user's Ctrl-C or an OOM killer.
DRIVER = """
import os, signal, sys
from transformers import TrainerCallback
import pipeline.train.loop as training

class SendSignal(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["AT_STEP"]):
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))

original = training.build_trainer
def build_trainer(*args, callbacks=None, **kwargs):
    return original(*args, callbacks=[*(callbacks or []), SendSignal()], **kwargs)
training.build_trainer = build_trainer
sys.argv = ["pipeline", *sys.argv[1:]]
from pipeline.cli.app import main
main()
"""
ROOT = Path(__file__).resolve().parents[3]


def _finetune(
    args: list[str], signal_name: str | None = None, at_step: int = 0
) -> subprocess.CompletedProcess:
    # One thread: much faster on a busy 2-core machine, and float reductions in the same order every run.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if signal_name:
        env.update(SIGNAL=signal_name, AT_STEP=str(at_step))
        command = [sys.executable, "-c", DRIVER, "finetune", *args]
    else:
        command = [sys.executable, "-m", "pipeline", "finetune", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def _losses(run_dir: Path) -> dict[int, float]:
    history = json.loads((run_dir / "metrics.json").read_text())["train"]["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def _only_run(root: Path) -> Path:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.slow  # four CLI processes
def test_interrupt_kill_and_resume_match_an_uninterrupted_run(make_recipe: Any, tmp_path: Path) -> None:
    # 24 records in batches of 4: 6 steps per epoch, so the resumed run crosses an epoch boundary
    # (a new shuffle); dropout > 0 checks that RNG states are restored too.
    recipe = make_recipe(
        data={"allow_contamination": True},
        adapter={"r": 4, "alpha": 8, "dropout": 0.1},
        train={
            "max_steps": 10,
            "batch_size": 4,
            "save_steps": 4,
            "save_total_limit": 3,
            "logging_steps": 1,
            "group_by_length": True,
            "precision": "fp32",
        },
        eval={"enabled": False},
    )
    reference = _finetune([str(recipe), f"train.output_dir={tmp_path / 'reference'}"])
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _only_run(tmp_path / "reference")

    # 1. Ctrl-C arriving after step 2 (during step 3): step 3 finishes, checkpoint-3 is saved, exit 130 with
    # the command that resumes.
    stopped = _finetune([str(recipe)], signal_name="SIGINT", at_step=2)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    run_dir = _only_run(tmp_path / "runs")
    message = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
    assert message == [
        f"error: SIGINT: training stopped at step 3 and saved checkpoint-3; resume with: "
        f"pipeline finetune {recipe} --resume {run_dir}"
    ]
    assert "Traceback" not in stopped.stderr
    assert (run_dir / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (run_dir / "adapter").exists()
    assert json.loads((run_dir / "manifest.json").read_text())["times"]["finished"] is None

    # 2. Resume (bare --resume = this recipe's newest run), then SIGKILL after step 6: checkpoint-4 is the
    # newest complete one. A half-written checkpoint-6 (killed while saving) must never be chosen.
    killed = _finetune([str(recipe), "--resume"], signal_name="SIGKILL", at_step=6)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "resuming from checkpoint-3" in " ".join(killed.stderr.split())
    half = run_dir / "checkpoints" / "checkpoint-6"
    shutil.copytree(run_dir / "checkpoints" / "checkpoint-4", half)
    state = half / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    (half / "optimizer.pt").unlink()

    # 3. Resume the named run to the end.
    resumed = _finetune([str(recipe), "--resume", str(run_dir)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-4" in " ".join(resumed.stderr.split())
    assert (run_dir / "checkpoints" / "incomplete-checkpoint-6").is_dir()
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run_dir.name]  # no second run folder

    got, want = _losses(run_dir), _losses(expected)
    assert sorted(got) == list(range(1, 11)) and sorted(want) == list(range(1, 11))
    for step in range(1, 11):
        assert abs(got[step] - want[step]) <= 1e-6, (
            f"step {step}: resumed {got[step]} vs uninterrupted {want[step]}"
        )
    adapter, reference_adapter = (
        load_file(d / "adapter" / "adapter_model.safetensors") for d in (run_dir, expected)
    )
    assert adapter.keys() == reference_adapter.keys() and adapter
    for name, tensor in adapter.items():
        assert (tensor - reference_adapter[name]).abs().max().item() <= 1e-6, name

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["times"]["finished"] is not None
    assert [r["checkpoint"] for r in manifest["resumed"]] == ["checkpoint-3", "checkpoint-4"]
    assert all(r["differences"] == [] and not r["forced"] for r in manifest["resumed"])


def test_resume_refuses_changed_inputs_unless_forced(
    make_recipe: Any,
    tmp_path: Path,
    chat_files: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    # In-process through pipeline.cli.app.main (no interpreter start-ups): SIGTERM, refusal, forced resume.
    import torch
    from transformers import TrainerCallback

    import pipeline.train.loop
    from pipeline.cli.app import main

    class SigtermAfterStep1(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    def cli(*argv: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["pipeline", "finetune", *argv])
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code, capsys.readouterr().err

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    recipe = make_recipe(
        data={"allow_contamination": True},
        train={"max_steps": 4, "save_steps": 2, "precision": "fp32"},
        eval={"enabled": False},
    )
    original = pipeline.train.loop.build_trainer
    with monkeypatch.context() as patch:
        patch.setattr(
            pipeline.train.loop,
            "build_trainer",
            lambda *a, callbacks=(), **k: original(*a, callbacks=[*callbacks, SigtermAfterStep1()], **k),
        )
        code, err = cli(str(recipe))
    run_dir = _only_run(tmp_path / "runs")
    assert code == 143 and "SIGTERM: training stopped at step 2 and saved checkpoint-2; resume with: " in err
    before = sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*"))

    train_file, _ = chat_files
    train_file.write_text(train_file.read_text() + train_file.read_text().splitlines(keepends=True)[0])
    code, err = cli(str(recipe), "train.learning_rate=0.02", "--resume", str(run_dir))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 5 and len(errors) == 1 and "Traceback" not in err
    assert "cannot resume" in errors[0] and "train.learning_rate: 0.01 -> 0.02" in errors[0]
    assert f"data file {train_file.resolve()} changed" in errors[0] and "--force" in errors[0]
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")) == before  # nothing touched

    code, err = cli(str(recipe), "train.learning_rate=0.02", "--resume", str(run_dir), "--force")
    assert code in (0, None), err[-3000:]
    assert any(
        "inputs changed (--force)" in r.getMessage() and "train.learning_rate" in r.getMessage()
        for r in caplog.records
    )
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (
        manifest["resumed"][-1]["forced"] is True and manifest["resumed"][-1]["checkpoint"] == "checkpoint-2"
    )
    assert manifest["recipe"]["train"]["learning_rate"] == 0.02 and manifest["times"]["finished"]
