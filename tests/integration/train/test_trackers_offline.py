"""Each optional tracker, installed through its extra, logs a short run offline into the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune

# tracker -> a file pattern it writes under the run folder when offline
WRITES = {
    "wandb": "wandb/offline-run-*/run-*.wandb",
    "mlflow": "mlruns/*/*/meta.yaml",
    "trackio": "trackio/**/*",
}


@pytest.mark.parametrize("tracker", sorted(WRITES))
def test_tracker_logs_offline_under_the_run_folder(
    tracker: str, make_recipe: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(tracker)
    for variable in ("WANDB_MODE", "WANDB_DIR", "MLFLOW_TRACKING_URI", "TRACKIO_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    recipe = load_recipe(
        str(
            make_recipe(
                train={"max_steps": 2, "logging_steps": 1, "report_to": [tracker]}, eval={"enabled": False}
            )
        )
    )
    run = finetune(recipe)
    written = [p for p in Path(run.run_dir).glob(WRITES[tracker]) if p.is_file()]
    assert written, f"{tracker} wrote nothing matching {WRITES[tracker]} under {run.run_dir}"
