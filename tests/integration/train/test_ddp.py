"""Two real processes (DDP over gloo on CPU) through `accelerate launch -m pipeline finetune`.

One 2-process run, shared by the tests below: it must leave ONE run folder, written by rank 0, with an
adapter that reloads, and (world-size invariant) match a 1-process run with the same global batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from launched import errors, launch, tiny_recipe

from pipeline.runs.events import read_events

# Per-device batch 2 on 2 ranks = global batch 4. group_by_length off: its mega-batches are sized by the
# per-process batch, so the sample order would differ from the 1-process batch-4 run by design.
TRAIN = {"batch_size": 2, "max_steps": 3, "group_by_length": False}


def run_folders(recipe: Path) -> list[Path]:
    """Run folders a recipe's runs/ holds."""
    import yaml

    root = Path(yaml.safe_load(recipe.read_text())["train"]["output_dir"])
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def adapter_weights(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """The saved LoRA tensors of an adapter folder."""
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def step_losses(metrics: dict[str, Any]) -> list[float]:
    """Training loss logged at each optimizer step."""
    return [entry["loss"] for entry in metrics["train"]["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """One 2-process cpu-ddp finetune of the tiny model; its recipe and launcher output."""
    path = tiny_recipe(
        tmp_path_factory.mktemp("ddp"),
        tiny_model_dir,
        "tiny-ddp",
        train=TRAIN,
        # One generated answer: rank 0 alone evaluates, generation included, while rank 1 waits.
        eval={"generate_examples": 1, "max_new_tokens": 4},
    )
    result = launch("cpu-ddp.yaml", str(path))
    assert result.returncode == 0, errors(result)
    return {"recipe": path, "result": result}


def test_two_processes_write_one_run_folder_that_reloads(
    ddp_run: dict[str, Any], tiny_model_dir: Path
) -> None:
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    folders = run_folders(ddp_run["recipe"])
    assert len(folders) == 1, f"expected one run folder, got {[p.name for p in folders]}"
    run_dir = folders[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["world_size"] == 2, "the launch did not give 2 ranks"
    assert metrics["train"]["steps"] == 3
    assert {"recipe.yaml", "adapter", "metrics.json", "README.md"} <= {p.name for p in run_dir.iterdir()}
    assert not any(p.name.startswith(".") for p in run_dir.iterdir()), "temporary folders left behind"
    output = ddp_run["result"].stdout + ddp_run["result"].stderr
    assert "find_unused_parameters" not in output, "DDP searched LoRA's graph for unused parameters"
    # Rank 0 alone writes the event log: each step once, the world size both ranks trained with.
    events = read_events(run_dir)
    kinds = [e.kind for e in events]
    assert kinds[0] == "prepared" and kinds[-1] == "finished" and kinds.count("started") == 1
    assert [e.step for e in events if e.kind == "step"] == [1, 2, 3]
    assert next(e for e in events if e.kind == "started").world_size == 2

    weights = adapter_weights(run_dir / "adapter")
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in weights.items()), "LoRA B never trained"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reloaded = get_peft_model_state_dict(PeftModel.from_pretrained(base, run_dir / "adapter"))
    assert reloaded.keys() == weights.keys()
    assert all(torch.equal(reloaded[k], weights[k]) for k in weights), (
        "reloaded adapter differs from the file"
    )


def test_world_size_two_matches_one_process_with_the_global_batch(
    ddp_run: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 ranks x batch 2 == 1 rank x batch 4: loss at every step and the final adapter within 1e-4."""
    from pipeline.config.loader import load_recipe
    from pipeline.workflow import finetune

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    single = finetune(
        load_recipe(
            str(ddp_run["recipe"]),
            ["train.batch_size=4", f"train.output_dir={tmp_path / 'runs'}", "eval.enabled=false"],
        )
    )
    two = run_folders(ddp_run["recipe"])[0]
    two_metrics = json.loads((two / "metrics.json").read_text())
    assert single.metrics["train"]["world_size"] == 1

    assert step_losses(single.metrics) == pytest.approx(step_losses(two_metrics), abs=1e-4)
    assert len(step_losses(two_metrics)) == 3
    one_weights, two_weights = adapter_weights(single.run_dir / "adapter"), adapter_weights(two / "adapter")
    assert one_weights.keys() == two_weights.keys()
    for key, value in one_weights.items():
        assert torch.allclose(value, two_weights[key], atol=1e-4), f"{key} differs between 1 and 2 processes"
