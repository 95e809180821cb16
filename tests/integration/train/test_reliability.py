"""Failures during a real (tiny) finetune through pipeline.cli.app.main: a non-finite loss, a full or read-only
disk, and a --from-manifest re-run that reproduces the recorded run."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

from pipeline.train.checkpoints import checkpoint_problem


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # One thread: fast on a busy machine and the same float reduction order in every run.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    yield
    torch.set_num_threads(threads)


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    make_recipe: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Adam moves every weight by about the learning rate: 1e30 makes step 2's logits overflow to inf/NaN.
    # The schema refuses such a rate (train.learning_rate <= 1), so it is set after validation.
    import pipeline.train.resume as resume

    validated = resume.recipe_for_finetune

    def with_huge_rate(*args: Any, **kwargs: Any) -> Any:
        recipe, previous = validated(*args, **kwargs)
        train = recipe.train.model_copy(update={"learning_rate": 1e30})
        return recipe.model_copy(update={"train": train}), previous

    monkeypatch.setattr(resume, "recipe_for_finetune", with_huge_rate)
    recipe = make_recipe(
        data={"allow_contamination": True},
        train={
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "max_steps": 4,
            "save_steps": 1,
            "save_total_limit": 5,
        },
        eval={"enabled": False},
    )
    code, err = run_cli(["finetune", str(recipe)], monkeypatch, capsys)
    run_dir = next((tmp_path / "runs").iterdir())
    line = _error_line(err)
    assert code == 5
    assert line.startswith("error: non-finite loss or gradient at step 2;")
    assert f"the last good checkpoint is {run_dir / 'checkpoints' / 'checkpoint-1'}" in line
    checkpoints = sorted(
        p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("checkpoint-")
    )
    assert checkpoints == ["checkpoint-1"]
    assert checkpoint_problem(run_dir / "checkpoints" / "checkpoint-1") is None
    weights = load_file(run_dir / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert not (run_dir / "adapter").exists()


def test_from_manifest_reruns_the_same_configuration(
    make_recipe: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = make_recipe(data={"allow_contamination": True}, train={"max_steps": 3}, eval={"enabled": False})
    assert run_cli(["finetune", str(recipe), "train.learning_rate=0.005"], monkeypatch, capsys)[0] in (
        0,
        None,
    )
    first = next((tmp_path / "runs").iterdir())
    manifest = json.loads((first / "manifest.json").read_text())
    recipe.unlink()  # the re-run needs only the manifest (and the same data and model)
    monkeypatch.chdir(tmp_path)
    assert run_cli(["finetune", "--from-manifest", str(first / "manifest.json")], monkeypatch, capsys)[0] in (
        0,
        None,
    )
    second = next(p for p in (tmp_path / "runs").iterdir() if p != first)
    rerun = json.loads((second / "manifest.json").read_text())

    assert rerun["recipe"] == manifest["recipe"] and rerun["recipe"]["train"]["learning_rate"] == 0.005
    assert rerun["recipe_sha256"] == manifest["recipe_sha256"]
    assert rerun["data"] == manifest["data"] and rerun["model"]["sha256"] == manifest["model"]["sha256"]
    assert rerun["rerun_of"]["differences"] == [] and rerun["command"][-2:] == [
        "--from-manifest",
        str(first / "manifest.json"),
    ]
    losses = [
        [
            e["loss"]
            for e in json.loads((d / "metrics.json").read_text())["train"]["log_history"]
            if "loss" in e
        ]
        for d in (first, second)
    ]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], abs=1e-6)

    # The data changed since: refused with the reason, nothing written; --force runs anyway.
    train_file = Path(manifest["data"]["files"][0]["path"])
    train_file.write_text(train_file.read_text() * 2)
    before = sorted((tmp_path / "runs").iterdir())
    code, err = run_cli(["finetune", "--from-manifest", str(first / "manifest.json")], monkeypatch, capsys)
    assert code == 2 and f"data file {train_file} changed (sha256)" in _error_line(err)
    assert sorted((tmp_path / "runs").iterdir()) == before


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs file systems (needs root / CAP_SYS_ADMIN; skipped elsewhere)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0 or not shutil.which("umount"):
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)])


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ("size=48k", "the disk is full"),
        ("ro,size=1m", "the file system is read-only"),
    ],
)
def test_full_or_read_only_disk_is_one_clear_line(
    options: str,
    reason: str,
    small_disk: Callable[[str], Path],
    make_recipe: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = small_disk(options)
    recipe = make_recipe(
        data={"allow_contamination": True},
        train={"output_dir": str(disk / "runs"), "save_steps": 1},
        eval={"enabled": False},
    )
    code, err = run_cli(["finetune", str(recipe)], monkeypatch, capsys)
    line = _error_line(err)
    assert code == 8 and "cannot write" in line and f"({reason})" in line, line
    assert "free disk space" in line or "writable folder" in line


def test_storage_errors_from_any_layer_become_one_line(
    make_recipe: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # torch.save reports a full disk as a RuntimeError, not an OSError; it must read the same.
    import pipeline.train.manifest

    def full(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(pipeline.train.manifest, "write_json", full)
    code, err = run_cli(
        ["finetune", str(make_recipe(data={"allow_contamination": True}))], monkeypatch, capsys
    )
    assert code == 8 and "cannot write an output file (the disk is full)" in _error_line(err)
