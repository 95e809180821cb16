"""A recognisable fake HF_TOKEN (and another secret) never reaches a file, a log line or the Hub request
bodies: a real finetune and a push to the in-memory test Hub, then every byte written is scanned."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hubserver import FakeHub

TOKEN = "hf_LEAKCANARYxq7Zt3Vb9Nw2Rk5Pm8"
OTHER_SECRET = "sk-LEAKCANARYotherSecret0123456789"
ROOT = Path(__file__).resolve().parents[3]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _leaks(data: bytes) -> list[str]:
    # The token's distinctive middle part catches it whole, split across lines, or prefixed.
    return [s for s in (TOKEN, OTHER_SECRET, "LEAKCANARY") if s.encode() in data]


@pytest.mark.slow  # two CLI processes and a push over HTTP
def test_no_secret_in_any_output(make_recipe: Any, tmp_path: Path) -> None:
    recipe = make_recipe(
        data={"allow_contamination": True},
        train={"report_to": ["tensorboard"], "save_steps": 1, "max_steps": 2},
        eval={"generate_examples": 0},
    )
    with FakeHub(TOKEN) as hub:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_HOME")}
        env.update(
            HF_TOKEN=TOKEN,
            OPENAI_API_KEY=OTHER_SECRET,
            HF_ENDPOINT=hub.endpoint,
            HF_HOME=str(tmp_path / "hf-home"),
            PIPELINE_CACHE=str(tmp_path / "cache"),
            HF_DATASETS_CACHE=str(tmp_path / "datasets-cache"),
            OMP_NUM_THREADS="1",
        )
        # Offline while training (nothing may be downloaded); online for the push.
        trained = _run(["finetune", str(recipe)], {**env, "HF_HUB_OFFLINE": "1"})
        run_dir = next((tmp_path / "runs").iterdir())
        pushed = _run(["push", str(run_dir), "--repo-id", "tester/leak-check"], env)
        uploaded = hub.files("tester/leak-check")
        received = b"".join(hub.received)

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.relative_to(run_dir).as_posix() for p in written if run_dir in p.parents}
    assert {
        "manifest.json",
        "recipe.yaml",
        "metrics.json",
        "README.md",
        "adapter/adapter_model.safetensors",
        "checkpoints/checkpoint-2/trainer_state.json",
    } <= names
    assert any("events.out.tfevents" in n for n in names), names  # the tensorboard log is scanned too
    assert "manifest.json" in uploaded and "README.md" in uploaded
    for path in written:
        assert not _leaks(path.read_bytes()), f"secret written to {path}"
    for name, stream in (("finetune", trained), ("push", pushed)):
        assert not _leaks((stream.stdout + stream.stderr).encode()), f"secret printed by {name}"
    assert not _leaks(received), "secret sent in a Hub request body or path"
    for name, content in uploaded.items():
        assert not _leaks(content), f"secret uploaded in {name}"


def test_a_secret_in_a_recipe_field_is_refused_before_anything_is_written(
    make_recipe: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli.app import main

    recipe = make_recipe(data={"allow_contamination": True}, train={"max_steps": 1}, eval={"enabled": False})
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(sys, "argv", ["pipeline", "finetune", str(recipe), f"description=use {TOKEN}"])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert exited.value.code == 2 and "Traceback" not in err
    assert len(errors) == 1 and "description holds what looks like a secret" in errors[0]
    assert "LEAKCANARY" not in out + err
    assert not (tmp_path / "runs").exists()
