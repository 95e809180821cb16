"""Each optional tracker, installed through its extra, logs a short run offline into the run folder.

Each run is its own `pipeline finetune` process, as users run it: trackio fixes its storage folder when it is
first imported (and trl imports it on every checkpoint save), so in-process runs would share the first folder."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# tracker -> a file pattern it writes under the run folder when offline
WRITES = {
    "wandb": "wandb/offline-run-*/run-*.wandb",
    "mlflow": "mlruns/*/*/meta.yaml",
    "trackio": "trackio/*.db",
    "tensorboard": "tensorboard/events.out.tfevents.*",
}


@pytest.mark.parametrize("tracker", sorted(WRITES))
def test_tracker_logs_offline_under_the_run_folder(tracker: str, make_recipe: Any, tmp_path: Path) -> None:
    if importlib.util.find_spec(tracker) is None:
        pytest.skip(f"{tracker} is not installed (pip install -e '.[{tracker}]')")
    recipe = make_recipe(
        train={"max_steps": 2, "logging_steps": 1, "report_to": [tracker]}, eval={"enabled": False}
    )
    private = ("WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI", "TRACKIO_DIR", "TENSORBOARD_LOGGING_DIR")
    env = {k: v for k, v in os.environ.items() if k not in private}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "finetune", str(recipe)],
        env={**env, "HF_HUB_OFFLINE": "1", "WANDB_API_KEY": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("tiny-*/")
    written = [p for p in run_dir.glob(WRITES[tracker]) if p.is_file()]
    assert written, f"{tracker} wrote nothing matching {WRITES[tracker]} under {run_dir}"


def test_eval_steps_with_two_trackers_logs_the_held_out_curve_to_both(
    make_recipe: Any, tmp_path: Path
) -> None:
    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio is not installed (pip install -e '.[trackio]')")
    recipe = make_recipe(
        train={"max_steps": 4, "eval_steps": 2, "logging_steps": 1, "report_to": ["tensorboard", "trackio"]},
        eval={"generate_examples": 0, "samples": 0},
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "finetune", str(recipe)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("tiny-*/")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in metrics["train"]["log_history"] if "eval_loss" in h] == [2, 4]
    assert list(run_dir.glob("tensorboard/events.out.tfevents.*")) and list(run_dir.glob("trackio/*.db"))
    assert (run_dir / "plots" / "training.png").stat().st_size > 10_000  # train and eval loss curves
