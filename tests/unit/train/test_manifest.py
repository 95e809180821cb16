"""The run manifest, checkpoint completeness, resume argument handling and the storage/path guards."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.errors import RecipeError
from pipeline.files import safe_child
from pipeline.models.loading import load_tokenizer
from pipeline.runs.manifest import SCHEMA_VERSION, Manifest
from pipeline.train.checkpoints import checkpoint_problem, latest_checkpoint
from pipeline.train.guards import storage_error
from pipeline.train.manifest import build_manifest, differences, read_manifest, redact, write_manifest
from pipeline.train.resume import normalize_resume_argv

TOKEN = "hf_UNITtestTOKENabcdefgh12345"


@pytest.fixture
def manifest_of(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Manifest]:
    def build(recipe_path: Path, *overrides: str) -> dict[str, Any]:
        recipe = load_recipe(str(recipe_path), list(overrides))
        return build_manifest(recipe, load_splits(recipe.data), load_tokenizer(recipe.model))

    return build


def test_manifest_records_inputs_environment_and_command(
    make_recipe: Callable[..., Path],
    manifest_of: Callable[..., Manifest],
    chat_files: Any,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(sys, "argv", ["pipeline", "finetune", "tiny.yaml", f"--token={TOKEN}"])
    monkeypatch.setenv("WORLD_SIZE", "1")
    manifest = manifest_of(make_recipe(), "train.seed=7")
    train, evaluation = chat_files

    assert manifest.recipe["train"]["seed"] == 7 and manifest.seeds == {"train": 7, "data": 42}
    canonical = json.dumps(manifest.recipe, sort_keys=True, separators=(",", ":"))
    assert manifest.recipe_sha256 == hashlib.sha256(canonical.encode()).hexdigest()
    files = {Path(f.path or "").name: f for f in manifest.data.files}
    assert files["train.jsonl"].sha256 == hashlib.sha256(train.read_bytes()).hexdigest()
    assert files["eval.jsonl"].bytes == evaluation.stat().st_size
    assert manifest.data.records == {"train": 24, "eval": 4}
    weights = (tiny_model_dir / "model.safetensors").read_bytes()
    assert manifest.model.files_sha256["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert (
        len(manifest.tokenizer.sha256 or "") == 64
        and len(manifest.tokenizer.chat_template_sha256 or "") == 64
    )
    env = manifest.environment
    assert env.world_size == 1 and env.torch and env.python and env.packages["transformers"]
    assert manifest.command == ["pipeline", "finetune", "tiny.yaml", "--token=***"]
    assert manifest.git is None or len(manifest.git["commit"]) == 40
    assert manifest.times.started and manifest.times.finished is None
    assert manifest.schema_version == SCHEMA_VERSION
    written = json.loads(write_manifest(tmp_path, manifest).read_text())
    assert written["tokenizer"]["class"] == manifest.tokenizer.class_name  # the file keeps its key names
    assert read_manifest(tmp_path) == Manifest.model_validate(written)


def test_differences_name_what_changed_and_ignore_eval_settings(
    make_recipe: Callable[..., Path],
    manifest_of: Callable[..., Manifest],
    chat_files: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recipe = make_recipe()
    base = manifest_of(recipe)
    assert differences(base, manifest_of(recipe, "eval.max_new_tokens=3", "hub.private=false")) == []
    assert differences(base, manifest_of(recipe, "train.learning_rate=0.5")) == [
        "train.learning_rate: 0.01 -> 0.5"
    ]
    train, _ = chat_files
    train.write_text(train.read_text() + train.read_text())
    changed = differences(base, manifest_of(recipe))
    assert changed == [f"data file {train.resolve()} changed (sha256)"]
    two_ranks = base.model_copy(deep=True)
    two_ranks.environment.world_size = 2
    assert differences(base, two_ranks) == ["world size: 1 -> 2"]


def test_secrets_are_redacted_everywhere_in_a_written_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "plain-looking-secret-value")
    assert redact(f"a {TOKEN} b plain-looking-secret-value c") == "a *** b *** c"
    manifest = Manifest.model_validate(
        {
            "recipe_name": "tiny",
            "recipe": {},
            "model": {"name": "tiny"},
            "times": {"started": "now"},
            "nested": [f"x{TOKEN}", "plain-looking-secret-value"],
        }
    )
    path = write_manifest(tmp_path, manifest)
    text = path.read_text()
    assert TOKEN not in text and "plain-looking-secret-value" not in text and text.count("***") == 2


def test_read_manifest_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="no such manifest"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(RecipeError, match="not a pipeline manifest"):
        read_manifest(tmp_path)  # a run folder works as well as the file
    (tmp_path / "manifest.json").write_text(json.dumps({"schema_version": 2, "recipe_name": "x"}))
    with pytest.raises(
        RecipeError, match=r"manifest\.json: recipe: Field required; not a manifest this version"
    ):
        read_manifest(tmp_path)


def _checkpoint(root: Path, step: int) -> Path:
    folder = root / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_only_complete_checkpoints_are_resumed_from(tmp_path: Path) -> None:
    good = [_checkpoint(tmp_path, s) for s in (9, 10)]
    assert (
        checkpoint_problem(good[1]) is None and latest_checkpoint(tmp_path) == good[1]
    )  # 10 > 9, not by name

    broken = {
        11: lambda f: (f / "trainer_state.json").unlink(),
        12: lambda f: (f / "trainer_state.json").write_text('{"global_st'),
        13: lambda f: (f / "trainer_state.json").write_text('{"global_step": 5}'),
        14: lambda f: (f / "optimizer.pt").unlink(),
        15: lambda f: (f / "scheduler.pt").write_bytes(b""),
        16: lambda f: (f / "adapter_model.safetensors").unlink(),
        17: lambda f: (f / "rng_state.pth").unlink(),
    }
    for step, damage in broken.items():
        damage(_checkpoint(tmp_path, step))
        assert checkpoint_problem(tmp_path / "checkpoints" / f"checkpoint-{step}") is not None, step
    assert latest_checkpoint(tmp_path) == good[1]
    shutil.rmtree(tmp_path / "checkpoints")
    assert latest_checkpoint(tmp_path) is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["finetune", "r.yaml", "--resume"], ["finetune", "r.yaml", "--resume", "latest"]),
        (
            ["finetune", "r.yaml", "--resume", "--force"],
            ["finetune", "r.yaml", "--resume", "latest", "--force"],
        ),
        (
            ["finetune", "r.yaml", "--resume", "train.max_steps=9"],
            ["finetune", "r.yaml", "--resume", "latest", "train.max_steps=9"],
        ),
        (["finetune", "r.yaml", "--resume", "runs/r-1"], ["finetune", "r.yaml", "--resume", "runs/r-1"]),
        (["validate", "r.yaml"], ["validate", "r.yaml"]),
    ],
)
def test_bare_resume_means_latest(argv: list[str], expected: list[str]) -> None:
    assert normalize_resume_argv(argv) == expected


def test_storage_errors_are_recognised_through_the_exception_chain() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "runs/x/adapter/model.safetensors")
    assert str(storage_error(full)) == (
        "runs/x/adapter/model.safetensors: cannot write (the disk is full); "
        "free disk space, then resume with --resume."
    )
    read_only = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/runs")
    assert "(the file system is read-only); set train.output_dir to a writable folder" in str(
        storage_error(read_only)
    )
    try:
        try:
            raise full
        except OSError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert storage_error(outer) is not None
    assert storage_error(OSError(errno.ENOENT, "No such file")) is None
    assert storage_error(ValueError("bad value")) is None


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/passwd"])
def test_names_cannot_escape_their_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(RecipeError, match="would write outside"):
        safe_child(tmp_path, name, "run name")
    assert safe_child(tmp_path, "tiny-20260101-000000", "run name") == tmp_path / "tiny-20260101-000000"
