"""Experiment trackers (train.report_to): installed or a one-line error naming the extra, and local by default.

transformers' own callbacks do the logging; this module only checks the packages before any weight loads and
points each tracker at the run folder for the length of training (offline unless the user's environment says
otherwise).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import RecipeError

# tracker -> (module transformers imports, pip extra of this project that installs it)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}


def active_trackers(report_to: list[str]) -> list[str]:
    """The trackers to report to ('none' dropped)."""
    return [name for name in report_to if name != "none"]


def check_trackers(report_to: list[str], source: str) -> None:
    """Raise a RecipeError naming the extra to install for the first tracker whose package is missing."""
    for name in active_trackers(report_to):
        module, extra = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            install = "pip install tensorboard" if extra == "tensorboard" else f"pip install -e '.[{extra}]'"
            raise RecipeError(
                f"{source}: train.report_to: {name} is not installed; {install}, or remove {name} from "
                "train.report_to."
            )


def local_settings(run_dir: Path, report_to: list[str]) -> dict[str, str]:
    """Environment variables that keep each tracker's files in the run folder and off the network."""
    names = set(active_trackers(report_to))
    settings: dict[str, str] = {}
    if "tensorboard" in names:
        settings["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    if "wandb" in names:
        settings.update(WANDB_MODE="offline", WANDB_DIR=str(run_dir), WANDB_SILENT="true")
    if "mlflow" in names:
        # mlflow 3 refuses a file store unless told it is wanted; it is, for offline local runs.
        settings.update(
            MLFLOW_TRACKING_URI=(run_dir / "mlruns").resolve().as_uri(), MLFLOW_ALLOW_FILE_STORE="true"
        )
    if "trackio" in names:
        settings["TRACKIO_DIR"] = str(run_dir / "trackio")
    return settings


@contextmanager
def tracking_to(run_dir: Path, report_to: list[str]) -> Iterator[None]:
    """While training: each tracker writes under run_dir, except where the user's environment already chose."""
    chosen = {k: v for k, v in local_settings(run_dir, report_to).items() if k not in os.environ}
    os.environ.update(chosen)
    try:
        yield
    finally:
        for key in chosen:
            os.environ.pop(key, None)
