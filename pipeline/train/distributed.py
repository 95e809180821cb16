"""Several processes, one run: who writes, who waits, and the values every rank must agree on.

`python -m pipeline finetune` is one process and every helper here is then a no-op. Under
`accelerate launch` (DDP, FSDP, DeepSpeed; one or many nodes) the launcher sets WORLD_SIZE/RANK and
these helpers use accelerate's PartialState, the same state the Trainer builds on later.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from accelerate import PartialState

    from pipeline.config.schema import ModelSpec

T = TypeVar("T")
# Non-main ranks idle at a barrier while rank 0 evaluates and writes the report, which can take far
# longer than torch's 30-minute default before the barrier would time out.
BARRIER_TIMEOUT = timedelta(hours=3)


def world_size() -> int:
    """Number of processes in this run, from the launcher's environment (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True under a multi-process launch."""
    return world_size() > 1


def state() -> PartialState:
    """accelerate's process state, creating the process group on first use (gloo on CPU)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=BARRIER_TIMEOUT)


def is_main_process() -> bool:
    """True on global rank 0 (the only writer of the run folder), and in a single process."""
    return not is_distributed() or state().is_main_process


def barrier() -> None:
    """Wait until every rank arrives here."""
    if is_distributed():
        state().wait_for_everyone()


@contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each machine's local rank 0 first, then on the other ranks of that machine."""
    with state().local_main_process_first() if is_distributed() else nullcontext():
        yield


def agree(make: Callable[[], T]) -> T:
    """make() on rank 0 only; every rank gets rank 0's result (picklable values)."""
    if not is_distributed():
        return make()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [make() if state().is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def prepare_assets(spec: ModelSpec) -> Path:
    """Resolve (convert or download) the base model once per machine before any rank loads it.

    pipeline.models.assets converts under a file lock already; running it on the local main rank first means
    the other ranks find the prepared folder instead of queueing on the lock or downloading again.
    """
    from pipeline.models.assets import resolve_model

    with local_main_first():
        return resolve_model(spec.name, spec.revision)


def is_sharded(trainer: Any) -> bool:
    """True when the trained weights are split across ranks (FSDP, DeepSpeed ZeRO-3).

    A sharded model can only run a forward pass with every rank taking part, so rank 0 alone must
    evaluate the saved adapter reloaded from disk instead.
    """
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(trainer.args, "deepspeed_plugin", None)
    zero3 = plugin is not None and plugin.zero_stage == 3
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and zero3)
