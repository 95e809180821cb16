"""`pipeline push` over real HTTP against the in-memory test Hub, then a fresh process loads the repo by id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from conftest import CONVERSATIONS, write_jsonl
from hubserver import FakeHub

TOKEN = "hf_FAKEfaketoken1234567890"
ROOT = Path(__file__).resolve().parents[3]
PROMPT_IDS = [[4, 17, 33, 60, 5, 9, 21, 2]]

LOAD_BY_ID = """
import json, sys, torch
from peft import AutoPeftModelForCausalLM
from pipeline.models.artifacts import load_target
repo, revision, out = sys.argv[1], sys.argv[2] or None, sys.argv[3]
ids = torch.tensor(json.loads(sys.argv[4]))
loaded = load_target(repo, revision=revision)
peft_model = AutoPeftModelForCausalLM.from_pretrained(repo, revision=revision).eval()
with torch.no_grad():
    torch.save({"pipeline": loaded.model(ids).logits, "peft": peft_model(ids).logits,
                "adapter_dir": str(loaded.ref.adapter_dir), "template": loaded.tokenizer.chat_template}, out)
"""


def hub_env(tmp_path: Path, endpoint: str, token: str | None = TOKEN) -> dict[str, str]:
    """Environment of a client process: online, talking to `endpoint`, with its own empty HF home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HOME", "HF_HUB_CACHE")
    }
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT))
    if token:
        env["HF_TOKEN"] = token
    return env


def run(
    args: list[str], env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a Python command in the repo root; output captured for assertions and token scans."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(TOKEN) as server:
        yield server


def tiny_recipe(folder: Path, model_dir: Path, name: str, **sections: dict) -> Path:
    """A recipe YAML for the tiny model with its own data and runs folder under `folder`."""
    train = write_jsonl(folder / "train.jsonl", [{"messages": m} for m in CONVERSATIONS * 6])
    evaluation = write_jsonl(folder / "eval.jsonl", [{"messages": m} for m in CONVERSATIONS])
    recipe = {
        "model": {"name": str(model_dir), "dtype": "float32"},
        "adapter": {"r": 4, "alpha": 8, "dropout": 0.0},
        "data": {"train": str(train), "eval": str(evaluation), "allow_contamination": True},  # repeated rows
        "train": {
            "max_length": 64,
            "max_steps": 2,
            "batch_size": 2,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "report_to": ["none"],
            "output_dir": str(folder / "runs"),
        },
        "eval": {"max_examples": 4, "generate_examples": 0, "batch_size": 4},
        **sections,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A finished two-step run of the tiny model (adapter, metrics, card, loss curve, recipe), shared read-only."""
    recipe = tiny_recipe(tmp_path_factory.mktemp("push-run"), tiny_model_dir, "tiny-push")
    run(["-m", "pipeline", "finetune", str(recipe)])
    (folder,) = (recipe.parent / "runs").iterdir()
    return folder


def local_logits(run_dir: Path) -> torch.Tensor:
    from pipeline.models.artifacts import load_target

    with torch.no_grad():
        return load_target(str(run_dir)).model(torch.tensor(PROMPT_IDS)).logits


def test_push_then_load_by_id_gives_same_logits(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    outputs = []
    pushed = run(
        ["-m", "pipeline", "push", str(run_dir), "--repo-id", "tester/tiny-adapter", "--private"],
        env=hub_env(tmp_path, hub.endpoint),
    )
    outputs.append(pushed.stdout + pushed.stderr)
    assert "tester/tiny-adapter@main" in pushed.stdout
    files = hub.files("tester/tiny-adapter")
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "chat_template.jinja",
        "README.md",
        "metrics.json",
        "manifest.json",
        "recipe.yaml",
        "loss_curve.png",
    } <= set(files)
    assert not [
        name for name in files if name.endswith((".bin", ".pt", ".pkl"))
    ]  # no pickles (training_args.bin)
    assert (
        files["adapter_model.safetensors"] == (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    )
    assert hub.repos[("models", "tester/tiny-adapter")].private
    card = files["README.md"].decode()
    assert 'AutoPeftModelForCausalLM.from_pretrained("tester/tiny-adapter")' in card
    assert files["loss_curve.png"].startswith(b"\x89PNG")

    # A fresh process with an empty cache downloads the repo by id: same logits via our loader and plain peft.
    out = tmp_path / "logits.pt"
    loaded = run(
        ["-c", LOAD_BY_ID, "tester/tiny-adapter", "", str(out), json.dumps(PROMPT_IDS)],
        env=hub_env(tmp_path / "fresh", hub.endpoint),
    )
    outputs.append(loaded.stdout + loaded.stderr)
    result = torch.load(out)
    expected = local_logits(run_dir)
    assert torch.allclose(result["pipeline"], expected, atol=1e-6)
    assert torch.allclose(result["peft"], expected, atol=1e-6)
    assert str(tmp_path / "fresh" / "hf-home") in result["adapter_dir"]  # really came from the download
    assert result["template"] and "im_start" in result["template"]

    # The token never leaves the Authorization header: not uploaded, not in the run folder, not printed.
    secret = TOKEN.encode()
    assert not [body[:80] for body in hub.received if secret in body]
    assert not [name for name, content in files.items() if secret in content]
    assert not [p for p in run_dir.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert not [text for text in outputs if TOKEN in text]


def test_push_to_branch_leaves_main_alone(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    env = hub_env(tmp_path, hub.endpoint)
    run(["-m", "pipeline", "push", str(run_dir), "--repo-id", "tester/branched"], env=env)
    main_sha = hub.repos[("models", "tester/branched")].branches["main"]
    # A different adapter on the branch "dev": main must stay as it was.
    from safetensors.torch import load_file, save_file

    weights_file = run_dir / "adapter" / "adapter_model.safetensors"
    original, weights = weights_file.read_bytes(), load_file(weights_file)
    save_file({k: v * 2 if "lora_B" in k else v for k, v in weights.items()}, weights_file)
    try:
        run(
            ["-m", "pipeline", "push", str(run_dir), "--repo-id", "tester/branched", "--revision", "dev"],
            env=env,
        )
        changed = weights_file.read_bytes()
    finally:
        weights_file.write_bytes(original)  # the shared run keeps the weights that main holds
    repo = hub.repos[("models", "tester/branched")]
    assert repo.branches["main"] == main_sha and repo.branches["dev"] != main_sha
    assert hub.files("tester/branched", "dev")["adapter_model.safetensors"] == changed
    assert hub.files("tester/branched", "main")["adapter_model.safetensors"] == original
    # Loading a pinned revision by id is covered over olah in test_hub_download.py (tag, commit, main).


@pytest.mark.parametrize(
    ("repo_id", "token", "endpoint", "expected"),
    [
        ("tester/x", None, None, "no Hugging Face token: set HF_TOKEN or run `hf auth login`"),
        ("tester/x", "hf_WRONGtoken000000000000", None, "the Hub rejected the token (401)"),
        ("refused-org/x", TOKEN, None, "the Hub refused the push to refused-org/x (403"),
        ("tester/x", TOKEN, "http://127.0.0.1:9", "cannot reach the Hub at http://127.0.0.1:9"),
    ],
    ids=["missing-token", "bad-token", "refused", "no-network"],
)
def test_failed_push_is_one_line_and_leaves_run_intact(
    hub: FakeHub,
    run_dir: Path,
    tmp_path: Path,
    repo_id: str,
    token: str | None,
    endpoint: str | None,
    expected: str,
) -> None:
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    done = run(
        ["-m", "pipeline", "push", str(run_dir), "--repo-id", repo_id],
        env=hub_env(tmp_path, endpoint or hub.endpoint, token),
        check=False,
    )
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "Traceback" not in done.stderr and (token or TOKEN) not in done.stderr + done.stdout
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


@pytest.mark.slow  # two tiny finetunes
def test_recipe_hub_push_at_end_of_finetune(hub: FakeHub, tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = tiny_recipe(
        tmp_path / "a", tiny_model_dir, "auto", hub={"push": True, "repo_id": "tester/auto", "private": False}
    )
    done = run(["-m", "pipeline", "finetune", str(recipe)], env=hub_env(tmp_path, hub.endpoint))
    (run_dir,) = (recipe.parent / "runs").iterdir()
    files = hub.files("tester/auto")
    assert (
        files["adapter_model.safetensors"] == (run_dir / "adapter" / "adapter_model.safetensors").read_bytes()
    )
    assert not hub.repos[("models", "tester/auto")].private
    assert TOKEN not in done.stdout + done.stderr

    # Without a token the run still completes (exit 0) and says once how to retry.
    recipe = tiny_recipe(
        tmp_path / "b", tiny_model_dir, "auto2", hub={"push": True, "repo_id": "tester/auto2"}
    )
    done = run(["-m", "pipeline", "finetune", str(recipe)], env=hub_env(tmp_path, hub.endpoint, token=None))
    warnings = [line for line in done.stderr.splitlines() if "push skipped" in line]
    assert len(warnings) == 1 and "pipeline push" in warnings[0] and "no Hugging Face token" in warnings[0]
    assert ("models", "tester/auto2") not in hub.repos
    assert all(
        (d / "adapter" / "adapter_model.safetensors").is_file() for d in (recipe.parent / "runs").iterdir()
    )


@pytest.mark.slow  # merges the tiny model in a subprocess
def test_push_merged_model(hub: FakeHub, run_dir: Path, tmp_path: Path) -> None:
    done = run(
        ["-m", "pipeline", "push", str(run_dir), "--repo-id", "tester/merged", "--merged"],
        env=hub_env(tmp_path, hub.endpoint),
    )
    files = hub.files("tester/merged")
    assert files["model.safetensors"] == (run_dir / "merged" / "model.safetensors").read_bytes()
    assert "config.json" in files and "adapter_config.json" not in files
    card = files["README.md"].decode()
    assert (
        "library_name: transformers" in card
        and 'AutoModelForCausalLM.from_pretrained("tester/merged")' in card
    )
    assert TOKEN not in done.stdout + done.stderr
