"""pipeline.hub.push without a server: what a push would send, and the one-line errors raised before any request."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.errors import AssetError, HubError
from pipeline.hub.push import push_files, push_run
from pipeline.models.artifacts import split_revision


@pytest.fixture
def fake_run(tmp_path: Path) -> Path:
    """A run folder with the files a finished run has (contents do not matter here)."""
    run = tmp_path / "runs" / "tiny-20261124-190000"
    adapter = run / "adapter"
    adapter.mkdir(parents=True)
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "README.md",
        "training_args.bin",
    ):
        (adapter / name).write_bytes(b"x")
    raw = {"model": {"name": "org/base"}, "data": {"train": "data.jsonl"}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    (run / "metrics.json").write_text("{}", encoding="utf-8")
    (run / "report.html").write_text("<html/>", encoding="utf-8")
    return run


def test_push_files_are_safetensors_configs_tokenizer_and_run_records(fake_run: Path) -> None:
    files = push_files(fake_run, merged=False)
    assert set(files) == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "metrics.json",
        "recipe.yaml",
    }
    assert files["adapter_config.json"] == fake_run / "adapter" / "adapter_config.json"
    # training_args.bin is a pickle; peft's own README.md gives way to the generated card.


def test_push_files_refuses_a_folder_without_safetensors(fake_run: Path) -> None:
    (fake_run / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(HubError, match=r"no \.safetensors weights to push"):
        push_files(fake_run, merged=False)


@pytest.mark.parametrize(
    ("repo_id", "env", "message"),
    [
        ("no-slash", {}, "repo id 'no-slash' must be ORG/NAME"),
        ("org/name", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1 is set: pushing needs the network"),
        ("org/name", {"HF_HUB_OFFLINE": "0", "HF_TOKEN": ""}, "no Hugging Face token: set HF_TOKEN"),
    ],
)
def test_push_run_fails_before_any_request(
    fake_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo_id: str, env: dict, message: str
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))  # no stored login
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(HubError) as error:
        push_run(fake_run, repo_id)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_push_run_names_a_missing_run_folder(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="no such run folder"):
        push_run(tmp_path / "nope", "org/name")


@pytest.mark.parametrize(
    ("target", "revision", "expected"),
    [
        ("org/model@v1.0", None, ("org/model", "v1.0")),
        ("org/model@0123abc", "0123abc", ("org/model", "0123abc")),
        ("org/model", "dev", ("org/model", "dev")),
        ("./runs/x@y", None, ("./runs/x@y", None)),  # a path, never split
        ("name@v1", None, ("name@v1", None)),
    ],
)
def test_split_revision(target: str, revision: str | None, expected: tuple[str, str | None]) -> None:
    assert split_revision(target, revision) == expected


def test_split_revision_rejects_two_different_pins() -> None:
    with pytest.raises(AssetError, match="two revisions given"):
        split_revision("org/model@v1", "v2")
