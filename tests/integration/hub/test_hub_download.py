"""Loading models, adapters and data by Hub id through olah, a real read-only Hub mirror, over HTTP on 127.0.0.1.

The mirror folder holds git repositories (olah serves them as the Hub API would): a tiny base model, an
adapter whose adapter_config.json names that base by id (tag v1, then a newer commit on main), and a small
chat data set. Client processes get HF_ENDPOINT pointing at olah and an empty Hugging Face cache.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONVERSATIONS, write_jsonl

pytest.importorskip("olah", reason="olah (dev extra) serves the Hub mirror")

ROOT = Path(__file__).resolve().parents[3]
IDS = [[4, 17, 33, 60, 5, 9, 21, 2]]
BASE, ADAPTER, DATA = "test-org/tiny-llama", "test-org/tiny-adapter", "test-org/tiny-chat"

LOAD = """
import json, sys, torch
from pipeline.models.artifacts import load_target
results = {}
for target in json.loads(sys.argv[1]):
    loaded = load_target(target)
    with torch.no_grad():
        results[target] = loaded.model(torch.tensor(json.loads(sys.argv[2]))).logits.tolist()
    results["base"] = loaded.ref.base.name
print(json.dumps(results))
"""


def _git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def _commit(folder: Path, message: str) -> str:
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", message)
    return _git(folder, "rev-parse", "HEAD")


def _adapter(model_dir: Path, target: Path, seed: int) -> None:
    """A LoRA adapter with non-zero weights whose config names the base by its Hub id."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.name_or_path = model.config._name_or_path = BASE
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.save_pretrained(target)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(target)


def _local_logits(model_dir: Path, adapter_dir: Path) -> torch.Tensor:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir).eval()
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    """Git repositories under mirrors/{models,datasets}/ORG/NAME; returns the expected adapter logits."""
    root = tmp_path_factory.mktemp("mirror")
    base = root / "models" / BASE
    shutil.copytree(tiny_model_dir, base)
    _git(base, "init", "-q", "-b", "main")
    _commit(base, "tiny base")

    adapter = root / "models" / ADAPTER
    _adapter(tiny_model_dir, adapter, seed=1)
    _git(adapter, "init", "-q", "-b", "main")
    v1 = _commit(adapter, "adapter v1")
    _git(adapter, "tag", "v1")
    expected = {"v1": _local_logits(tiny_model_dir, adapter)}
    _adapter(tiny_model_dir, adapter, seed=2)
    _commit(adapter, "adapter v2")
    expected["main"] = _local_logits(tiny_model_dir, adapter)
    expected["v1-sha"] = v1

    data = root / "datasets" / DATA
    write_jsonl(data / "data" / "train.jsonl", [{"messages": m} for m in CONVERSATIONS * 4])
    (data / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n"
        "  - split: train\n    path: data/train.jsonl\n---\n",
        encoding="utf-8",
    )
    _git(data, "init", "-q", "-b", "main")
    _commit(data, "chat data")
    expected["root"] = root
    return expected


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def olah(mirror: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """olah in offline mode serving the mirror folder on 127.0.0.1; yields its endpoint."""
    work, port = tmp_path_factory.mktemp("olah"), _free_port()
    config = work / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{work / "repos"}"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        f'mirrors-path = ["{mirror["root"]}"]\n[accessibility]\noffline = true\n',
        encoding="utf-8",
    )
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olah.server",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-path",
            str(work / "logs"),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "olah did not start"
                time.sleep(0.3)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def client_env(cache: Path, endpoint: str | None, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT")}
    env.update(HF_HOME=str(cache), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1" if offline else "0")
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 or not check, done.stderr[-3000:]
    return done


def test_adapter_id_with_revision_pins_and_finds_base(olah: str, mirror: dict, tmp_path: Path) -> None:
    tag, plain, commit = f"{ADAPTER}@v1", ADAPTER, f"{ADAPTER}@{mirror['v1-sha']}"
    done = run(["-c", LOAD, json.dumps([tag, plain, commit]), json.dumps(IDS)], client_env(tmp_path, olah))
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["base"] == BASE  # found from adapter_config.json, downloaded by id
    assert torch.allclose(torch.tensor(results[tag]), mirror["v1"], atol=1e-5)
    assert torch.allclose(torch.tensor(results[plain]), mirror["main"], atol=1e-5)
    assert torch.allclose(torch.tensor(results[commit]), mirror["v1"], atol=1e-5)
    assert not torch.allclose(mirror["v1"], mirror["main"], atol=1e-3)  # the pin really matters

    # Offline afterwards: the cached ids load without the server; an uncached id fails at once, clearly.
    started = time.monotonic()
    offline = run(["-c", LOAD, json.dumps([tag]), json.dumps(IDS)], client_env(tmp_path, olah, offline=True))
    assert torch.allclose(
        torch.tensor(json.loads(offline.stdout.strip().splitlines()[-1])[tag]), mirror["v1"], atol=1e-5
    )
    missing = run(
        ["-m", "pipeline", "merge", "test-org/not-cached"],
        client_env(tmp_path, olah, offline=True),
        check=False,
    )
    assert missing.returncode == 4 and "Traceback" not in missing.stderr
    assert (
        "error: model 'test-org/not-cached' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1"
        in (missing.stderr)
    )
    assert time.monotonic() - started < 60


def test_no_network_fails_fast_for_uncached_id(tmp_path: Path) -> None:
    """HF_ENDPOINT pointing at a closed port: a clear one-line error, not a hang on time-outs."""
    started = time.monotonic()
    done = run(
        ["-m", "pipeline", "merge", "test-org/not-cached"],
        client_env(tmp_path, "http://127.0.0.1:9"),
        check=False,
    )
    assert done.returncode == 4, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: model 'test-org/not-cached' is not available locally and could not be downloaded "
        "(LocalEntryNotFoundError); check the id, your network and HF_TOKEN, or give a local folder."
    ]
    assert time.monotonic() - started < 30


@pytest.mark.slow  # a tiny finetune
def test_recipe_names_model_and_data_by_hub_id(olah: str, tmp_path: Path) -> None:
    recipe = tmp_path / "hub-ids.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": {"name": BASE, "revision": "main", "dtype": "float32"},
                "adapter": {"r": 4, "alpha": 8, "dropout": 0.0},
                "data": {
                    "train": [{"path": DATA, "split": "train"}],
                    "eval_size": 4,
                    "allow_contamination": True,
                },
                "train": {
                    "max_length": 64,
                    "max_steps": 1,
                    "batch_size": 2,
                    "report_to": ["none"],
                    "output_dir": str(tmp_path / "runs"),
                },
                "eval": {"enabled": False},
            }
        ),
        encoding="utf-8",
    )
    run(["-m", "pipeline", "finetune", str(recipe)], client_env(tmp_path / "cache", olah))
    (run_dir,) = (tmp_path / "runs").iterdir()
    config = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == BASE  # portable: the id, not the cache folder
    assert (tmp_path / "cache" / "hub" / "models--test-org--tiny-llama").is_dir()
    assert (tmp_path / "cache" / "hub" / "datasets--test-org--tiny-chat").is_dir()
