#!/usr/bin/env bash
# Two nodes (8 GPUs each), one run: sbatch scripts/slurm_two_node.sh RECIPE [overrides...]
# srun starts one `accelerate launch` per node; accelerate starts the node's GPU processes. Every node needs
# the repository, .venv and the data at the same paths (a shared file system). Global rank 0 (node 0)
# alone writes runs/<recipe>-<time>/; each node prepares the model and the data once for its own ranks.
#SBATCH --job-name=pipeline-finetune
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
set -euo pipefail

RECIPE=${1:?usage: sbatch scripts/slurm_two_node.sh RECIPE [overrides...]}
shift
CONFIG=${CONFIG:-recipes/accelerate/two-node-fsdp.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
MAIN_PORT=${MAIN_PORT:-29500}
ACCELERATE=${ACCELERATE:-.venv/bin/accelerate}
# What SLURM sets: SLURM_JOB_NODELIST (the job's nodes), SLURM_NNODES (how many) and, in each task,
# SLURM_NODEID (this node's index, 0 on the first node, which hosts global rank 0).
# sed reads every line: `head -n 1` may close the pipe first, and pipefail then ends the job with SIGPIPE (141).
MAIN_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
export CONFIG GPUS_PER_NODE MAIN_PORT ACCELERATE MAIN_ADDR

# --kill-on-bad-exit: a node whose ranks failed ends the other node's launcher too.
srun --kill-on-bad-exit=1 bash -c 'exec "$ACCELERATE" launch --config_file "$CONFIG" \
    --num_machines "$SLURM_NNODES" --num_processes "$((SLURM_NNODES * GPUS_PER_NODE))" \
    --machine_rank "$SLURM_NODEID" --main_process_ip "$MAIN_ADDR" --main_process_port "$MAIN_PORT" \
    -m pipeline finetune "$@"' finetune "$RECIPE" "$@"
