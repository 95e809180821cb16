"""FSDP2 on two real CPU processes (gloo), started by `pipeline finetune RECIPE --launch cpu-fsdp.yaml`.

LoRA and full fine-tuning each run once on 2 ranks and once in this process at the same global batch: the
loss at every step and the logits of the saved result (reloaded with plain peft/transformers) agree. The
LoRA run is also the uninterrupted reference of the resume test: a 2-process run killed with SIGKILL after
its checkpoint, then resumed, ends where it ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from launched import (
    ROOT,
    TIMEOUT_OVERRIDES,
    environment,
    errors,
    launch,
    launch_two_nodes,
    metrics,
    only_run,
    probe_logits,
    reloaded_logits,
    step_losses,
    tiny_recipe,
    write_driver,
)

# Per-device batch 2 on 2 ranks = global batch 4, as test_ddp.py; a checkpoint at step 2 of 4.
TRAIN = {"batch_size": 2, "max_steps": 4, "save_steps": 2, "group_by_length": False, "precision": "fp32"}
FSDP_FILES = {"pytorch_model_fsdp.bin", "optimizer.bin"}  # only accelerate's FSDP saving writes these


def finetune_launched(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline finetune ARGS --launch recipes/accelerate/cpu-fsdp.yaml` (the user's command)."""
    command = [sys.executable, "-m", "pipeline", "finetune", *args, *TIMEOUT_OVERRIDES]
    command += ["--launch", "recipes/accelerate/cpu-fsdp.yaml"]
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)


def single_process(recipe: Path, output_dir: Path, overrides: list[str]) -> Path:
    """The same recipe in this process with the global batch (4) on one rank; its run folder."""
    from pipeline.config.loader import load_recipe
    from pipeline.workflow import finetune

    overrides = [*overrides, "train.batch_size=4", f"train.output_dir={output_dir}", "eval.enabled=false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, as each rank
    try:
        result = finetune(load_recipe(str(recipe), overrides))
    finally:
        torch.set_num_threads(threads)
    assert result.metrics["train"]["world_size"] == 1
    return result.run_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fsdp")
    recipe = tiny_recipe(
        root,
        tiny_model_dir,
        "tiny-fsdp",
        train=TRAIN,
        eval={"generate_examples": 0, "max_examples": 4},  # rank 0 evaluates the sharded result from disk
    )
    return {"root": root, "recipe": recipe}


OVERRIDES = {"lora": [], "full": ["adapter.method=full", "train.learning_rate=1e-3"]}


def _launched_run(setup: dict[str, Any], method: str) -> dict[str, Any]:
    output = setup["root"] / f"reference-{method}"
    result = finetune_launched(str(setup["recipe"]), f"train.output_dir={output}", *OVERRIDES[method])
    assert result.returncode == 0, errors(result)
    return {"run": only_run(output), "result": result}


@pytest.fixture(scope="module")
def lora_run(setup: dict[str, Any]) -> dict[str, Any]:
    return _launched_run(setup, "lora")


@pytest.fixture(scope="module")
def full_run(setup: dict[str, Any]) -> dict[str, Any]:
    return _launched_run(setup, "full")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp_on_two_processes_matches_one_process(
    method: str, setup: dict[str, Any], request: pytest.FixtureRequest, tiny_model_dir: Path
) -> None:
    launched = request.getfixturevalue(f"{method}_run")
    run = launched["run"]
    two = metrics(run)
    assert two["train"]["world_size"] == 2, "the launch did not give 2 ranks"
    assert {p.name for p in (run / "checkpoints" / "checkpoint-2").iterdir()} >= FSDP_FILES, "not FSDP"
    output = launched["result"].stdout + launched["result"].stderr
    assert "find_unused_parameters" not in output and "Traceback" not in output
    assert json.loads((run / "checks.json").read_text())["passed"] is True
    assert "adapted" in two  # rank 0 evaluated the sharded result (reloaded from disk)

    single = single_process(setup["recipe"], setup["root"] / f"single-{method}", OVERRIDES[method])
    assert sorted(step_losses(two)) == [1, 2, 3, 4]
    assert step_losses(two) == pytest.approx(step_losses(metrics(single)), abs=1e-4)
    full = method == "full"
    got, want = reloaded_logits(run, tiny_model_dir, full), reloaded_logits(single, tiny_model_dir, full)
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-4, "the 2-process FSDP result differs from the 1-process one"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    untrained = probe_logits(base, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert (got - untrained).abs().max().item() > 1e-3, "training left the model as it was"


def test_an_fsdp_run_killed_after_its_checkpoint_resumes_to_the_same_end(
    setup: dict[str, Any], lora_run: dict[str, Any]
) -> None:
    driver = write_driver(setup["root"])
    killed = launch("cpu-fsdp.yaml", str(setup["recipe"]), driver=driver, env=environment(KILL_AT_STEP="3"))
    assert killed.returncode != 0
    run = only_run(setup["root"] / "runs")
    assert (run / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (run / "metrics.json").exists()

    resumed = finetune_launched(str(setup["recipe"]), "--resume", str(run))
    assert resumed.returncode == 0, errors(resumed)
    assert "resuming from checkpoint-2" in " ".join(resumed.stderr.split())
    got, want = step_losses(metrics(run)), step_losses(metrics(lora_run["run"]))
    assert sorted(got) == [1, 2, 3, 4]
    assert got == pytest.approx(want, abs=1e-5)
    from safetensors.torch import load_file

    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    reference = load_file(lora_run["run"] / "adapter" / "adapter_model.safetensors")
    assert adapter.keys() == reference.keys() and adapter
    for name, tensor in adapter.items():
        assert (tensor - reference[name]).abs().max().item() <= 1e-5, name


def test_two_nodes_on_one_machine_complete_one_run(setup: dict[str, Any], lora_run: dict[str, Any]) -> None:
    """Two launches with num_machines 2 (machine_rank 0 and 1, main address 127.0.0.1) are one 2-rank run:
    global rank 0 alone writes the run folder, and it trains exactly as the one-machine run."""
    output = setup["root"] / "two-nodes"
    nodes = launch_two_nodes(
        "cpu-fsdp.yaml", [str(setup["recipe"]), f"train.output_dir={output}"], setup["root"]
    )
    codes, texts = [code for code, _ in nodes], [text for _, text in nodes]
    assert codes == [0, 0], "\n".join(text[-3000:] for text in texts)
    run = only_run(output)
    assert metrics(run)["train"]["world_size"] == 2
    assert f"-> {run}" in " ".join(texts[0].split()) and "->" not in texts[1]  # node 1 named no run folder
    assert step_losses(metrics(run)) == pytest.approx(step_losses(metrics(lora_run["run"])), abs=1e-5)
