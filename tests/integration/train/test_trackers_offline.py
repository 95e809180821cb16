"""Each optional tracker, installed through its extra, logs a short run offline into the run folder.

Each run is its own `pipeline finetune` process, as users run it: trackio fixes its storage folder when it is
first imported (and trl imports it on every checkpoint save), so in-process runs would share the first folder."""

from __future__ import annotations

import importlib.util
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
