"""This process's place in a run: rank, local rank, world size, main process and the sharding asked for.

The one place these facts are read. They come from accelerate's own reading of the launcher's environment
(accelerate.utils.get_cpu_distributed_information: torchrun's and `accelerate launch`'s RANK, LOCAL_RANK,
WORLD_SIZE and MPI's equivalents), the values accelerate's PartialState takes for a CPU run and writes back
to the environment; a GPU run's torchrun environment holds the same ones. Nothing here starts a process group,
so any layer may ask (pipeline.train.distributed builds accelerate's state and its collectives).
"""

from __future__ import annotations

import os
from typing import Literal


def _facts() -> tuple[int, int, int]:
    """(rank, local rank, world size) as accelerate reads them."""
    from accelerate.utils import get_cpu_distributed_information

    info = get_cpu_distributed_information()
    return info.rank, info.local_rank, info.world_size


def rank() -> int:
    """Global rank of this process (0 in a single process)."""
    return _facts()[0]


def local_rank() -> int:
    """Rank of this process on its machine, which is also its GPU index (0 in a single process)."""
    return _facts()[1]


def world_size() -> int:
    """Number of processes in this run (1 when not launched)."""
    return _facts()[2]


def is_distributed() -> bool:
    """True under a multi-process launch."""
    return world_size() > 1


def is_main_process() -> bool:
    """True on global rank 0 (the only writer of the run folder), and in a single process."""
    return rank() == 0


def is_local_main_process() -> bool:
    """True on each machine's first rank (the one that prepares what the machine shares), and alone."""
    return local_rank() == 0


def sharding_requested() -> Literal["FSDP", "DEEPSPEED"] | None:
    """'FSDP' or 'DEEPSPEED' when the launcher asked for sharded training, else None.

    The same test accelerate's Accelerator and AcceleratorState make on the variables `accelerate launch` sets."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "DEEPSPEED"
    return None
