"""train.report_to: a missing tracker is a validate error naming its extra; trackers write under the run folder
and leave the user's own settings (and the environment after training) alone."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from pipeline.errors import RecipeError
from pipeline.train import trackers


def test_missing_tracker_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(RecipeError) as error:
        trackers.check_trackers(["tensorboard", "wandb"], "my.yaml")
    assert str(error.value) == (
        "my.yaml: train.report_to: wandb is not installed; pip install -e '.[wandb]', or remove wandb from "
        "train.report_to."
    )


def test_none_and_installed_trackers_pass() -> None:
    trackers.check_trackers(["none"], "my.yaml")
    trackers.check_trackers(["tensorboard"], "my.yaml")  # a core dependency


def test_trackers_write_under_the_run_folder_and_offline(tmp_path: Path) -> None:
    settings = trackers.local_settings(tmp_path, ["tensorboard", "wandb", "mlflow", "trackio"])
    assert settings["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "tensorboard")
    assert settings["WANDB_MODE"] == "offline" and settings["WANDB_DIR"] == str(tmp_path)
    assert settings["MLFLOW_TRACKING_URI"] == (tmp_path / "mlruns").resolve().as_uri()
    assert settings["TRACKIO_DIR"] == str(tmp_path / "trackio")
    assert trackers.local_settings(tmp_path, ["none"]) == {}


def test_tracking_to_keeps_the_users_choice_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    with trackers.tracking_to(tmp_path, ["wandb"]):
        assert os.environ["WANDB_MODE"] == "online"  # the user asked for it
        assert os.environ["WANDB_DIR"] == str(tmp_path)
    assert "WANDB_DIR" not in os.environ and os.environ["WANDB_MODE"] == "online"
