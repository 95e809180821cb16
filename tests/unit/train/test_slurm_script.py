"""scripts/slurm_two_node.sh turns the environment SLURM sets into one `accelerate launch` per node: the same
config, the node's machine_rank, the first node's address, all processes counted, the recipe and overrides."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "slurm_two_node.sh"
# Stand-ins for what a cluster provides: scontrol lists the job's hosts; srun runs its command once per node
# with that node's SLURM_NODEID; "accelerate" prints the arguments it got, one launch per line.
STUBS = {
    # ...and then many more hosts, as on a big job: a reader that stops after the first line must not end
    # the script with SIGPIPE under pipefail.
    "scontrol": 'test "$1 $2 $3" = "show hostnames gpu-[07-08]" && printf "gpu-07\\ngpu-08\\n" && seq 200000',
    "srun": 'while [ "${1#--}" != "$1" ]; do shift; done\nfor node in 0 1; do SLURM_NODEID=$node "$@"; done',
    "accelerate": 'echo "$*"',
}


def test_each_node_launches_with_its_rank_and_the_first_nodes_address(tmp_path: Path) -> None:
    for name, body in STUBS.items():
        stub = tmp_path / name
        stub.write_text(f"#!/usr/bin/env bash\n{body}\n")
        stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "ACCELERATE": str(tmp_path / "accelerate"),
        "SLURM_JOB_NODELIST": "gpu-[07-08]",
        "SLURM_NNODES": "2",
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), "lora-small", "train.max_steps=2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    launches = [shlex.split(line) for line in result.stdout.splitlines()]
    assert len(launches) == 2
    for node, args in enumerate(launches):
        assert args[0] == "launch" and args[-3:] == ["finetune", "lora-small", "train.max_steps=2"]
        assert dict(zip(args[1:-3:2], args[2:-3:2], strict=True)) == {
            "--config_file": "recipes/accelerate/two-node-fsdp.yaml",
            "--num_machines": "2",
            "--num_processes": "16",  # 2 nodes x 8 GPUs: accelerate counts every process of the run
            "--machine_rank": str(node),
            "--main_process_ip": "gpu-07",  # the first node of the job hosts global rank 0
            "--main_process_port": "29500",
            "-m": "pipeline",
        }
