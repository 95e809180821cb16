"""Helpers of the multi-process tests: launch `pipeline finetune` on 2 CPU processes, read what a run wrote.

Every launch gets a free port, one thread per rank and a short distributed timeout (a hang fails in seconds,
not after pytest's 10 minutes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "recipes" / "accelerate"
# Seconds a rank may wait at a collective in these tests; a deadlock fails the launch this fast.
TIMEOUT_OVERRIDES = ["train.distributed_timeout=120", "train.data_wait_timeout=120"]
# A driver script in place of `-m pipeline`: run the CLI with test hooks installed from the environment.
# SLOW_PREPARE_S: local rank 0 sleeps that long before preparing the data; FAIL_CHECK: rank 0's post-training
# check fails; KILL_AT_STEP: rank 0 SIGKILLs itself at the end of that optimizer step.
DRIVER = """
import os, signal, sys, time
import pipeline.workflow as workflow
import pipeline.train.checks as checks
import pipeline.train.loop as training
from pipeline.errors import AssetError
from transformers import TrainerCallback

original_prepare = workflow.prepare_inputs
def prepare_inputs(recipe):
    if os.environ.get("LOCAL_RANK") == "0":
        time.sleep(float(os.environ.get("SLOW_PREPARE_S", "0")))
    return original_prepare(recipe)
workflow.prepare_inputs = prepare_inputs

if os.environ.get("FAIL_CHECK") and os.environ.get("RANK") == "0":
    def run_checks(*args, **kwargs):
        raise AssetError("post-training check failed: a stub check that always fails")
    checks.run_checks = run_checks

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if os.environ.get("RANK") == "0" and state.global_step == int(os.environ.get("KILL_AT_STEP", "0")):
            os.kill(os.getpid(), signal.SIGKILL)
original_build = training.build_trainer
def build_trainer(*args, callbacks=None, **kwargs):
    return original_build(*args, callbacks=[*(callbacks or []), Kill()], **kwargs)
training.build_trainer = build_trainer

sys.argv = ["pipeline", *sys.argv[1:]]
from pipeline.cli.app import main
main()
"""


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    """The environment of a launch: one thread per rank (2 cores), offline, plus extra variables."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **extra}


def accelerate_command(config: str, *launch_args: str, driver: Path | None = None) -> list[str]:
    """`accelerate launch --config_file recipes/accelerate/CONFIG [ARGS] (-m pipeline | DRIVER)`."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", str(CONFIGS / config), *launch_args]
    if "--main_process_port" not in launch_args:
        command += ["--main_process_port", str(free_port())]
    return [*command, *([str(driver)] if driver else ["-m", "pipeline"])]


def launch(
    config: str, *finetune_args: str, driver: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `pipeline finetune ARGS` on the processes of an accelerate config; its output and exit code."""
    recipe, *rest = finetune_args  # the test's own overrides come after the short timeouts and win
    command = [*accelerate_command(config, driver=driver), "finetune", recipe, *TIMEOUT_OVERRIDES, *rest]
    return subprocess.run(
        command, cwd=ROOT, env=env or environment(), capture_output=True, text=True, timeout=300
    )


def write_driver(folder: Path) -> Path:
    """The test-hook driver script (DRIVER) as a file the launcher can start."""
    path = folder / "driver.py"
    path.write_text(DRIVER, encoding="utf-8")
    return path


def errors(result: subprocess.CompletedProcess[str]) -> str:
    """The error lines of a launch, for assertion messages."""
    lines = (result.stdout + result.stderr).splitlines()
    return "\n".join(line for line in lines if "error" in line.lower())[-4000:]


def only_run(root: Path) -> Path:
    """The one run folder under root."""
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(runs) == 1, f"expected one run folder, got {[p.name for p in runs]}"
    return runs[0]


def metrics(run_dir: Path) -> dict[str, Any]:
    """A run's metrics.json."""
    return json.loads((run_dir / "metrics.json").read_text())


def step_losses(run_metrics: dict[str, Any]) -> dict[int, float]:
    """Training loss logged at each optimizer step."""
    history = run_metrics["train"]["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def probe_logits(model: Any, tokenizer: Any) -> torch.Tensor:
    """Logits of a fixed chat prompt (what a user of the saved result would compute)."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What does json.dumps do?"}], tokenize=False, add_generation_prompt=True
    )
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits


def reloaded_logits(run_dir: Path, base_dir: Path, full: bool) -> torch.Tensor:
    """Probe logits of a run's saved adapter (on a fresh base, plain peft) or full model (plain transformers)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = run_dir / "adapter"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if full:
        return probe_logits(AutoModelForCausalLM.from_pretrained(folder), tokenizer)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    return probe_logits(PeftModel.from_pretrained(base, folder), tokenizer)


def launch_two_nodes(
    config: str, finetune_args: list[str], logs: Path, driver: Path | None = None, **extra: str
) -> list[tuple[int, str]]:
    """Two launches of config as machine_rank 0 and 1 of num_machines 2 (main address 127.0.0.1), one process
    each: (exit code, output) per node."""
    port, processes, files = str(free_port()), [], []
    recipe, *rest = finetune_args
    for rank in (0, 1):
        node = ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank)]
        node += ["--main_process_ip", "127.0.0.1", "--main_process_port", port]
        command = [*accelerate_command(config, *node, driver=driver), "finetune", recipe, *TIMEOUT_OVERRIDES]
        files.append(logs / f"node-{rank}.log")
        with files[-1].open("w") as sink:  # a file, not a pipe: neither node can block on a full pipe
            processes.append(
                subprocess.Popen(
                    [*command, *rest], cwd=ROOT, env=environment(**extra), stdout=sink, stderr=sink
                )
            )
    codes = [process.wait(timeout=300) for process in processes]
    return [(code, log.read_text()) for code, log in zip(codes, files, strict=True)]


def tiny_recipe(root: Path, model_dir: Path, name: str, **sections: dict[str, Any]) -> Path:
    """root/NAME.yaml: the conftest tiny recipe on chat files under root, runs under root/runs."""
    from conftest import write_chat_files, write_tiny_recipe

    files = write_chat_files(root)
    return write_tiny_recipe(root / f"{name}.yaml", model_dir, files, root / "runs", **sections)
