"""Several processes, one run: who writes, who waits (and for how long), and the values every rank must agree on.

`python -m pipeline finetune` is one process and every helper here is then a no-op. Under
`accelerate launch` (DDP, FSDP, DeepSpeed; one or many nodes) these helpers use accelerate's PartialState, the
same state the Trainer builds on later; which rank this is comes from pipeline.ranks.

No rank waits blindly: data preparation (once per machine) and the end of a run (rank 0 checks, evaluates and
reports) exchange each rank's outcome, so a failure on any rank stops every rank with the same one-line error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline import ranks
from pipeline.errors import PipelineError, TrainingError
from pipeline.ranks import is_distributed
from pipeline.ranks import is_main_process as is_main_process  # workflow asks here

if TYPE_CHECKING:
    from accelerate import PartialState

    from pipeline.config.schema import ModelSpec

T = TypeVar("T")
# Non-main ranks wait while rank 0 evaluates and writes the report, which can take far longer than torch's
# 30-minute default; train.distributed_timeout sets it per recipe (the first state() call fixes it).
DEFAULT_TIMEOUT_S = 3 * 3600
REPORT_GRACE_S = 2.0  # seconds a rank waits before stopping for another rank's failure


class RankFailed(PipelineError):
    """Another rank failed: this rank stops too, with that rank's one-line error and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def state(timeout_s: int = DEFAULT_TIMEOUT_S) -> PartialState:
    """accelerate's process state, creating the process group on first use (gloo on CPU) with a collective
    timeout of timeout_s seconds (later calls share the first one's group)."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))


def start(timeout_s: int) -> None:
    """Create the process group with this collective timeout (seconds), before anything else does."""
    if is_distributed():
        state(timeout_s)


def shutdown() -> None:
    """Tear down this process's process groups, if any, while the interpreter is still whole.

    A launched rank that exits with its groups alive leaves them to torch's native teardown at exit, which
    now and then aborts ("terminate called without an active exception", exit 134 instead of the run's code).
    """
    if "torch.distributed" not in sys.modules:  # nothing to tear down, and `--help` stays free of torch
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank arrives here."""
    if is_distributed():
        state().wait_for_everyone()


def one_line(exc: BaseException) -> tuple[str, int, BaseException]:
    """(the one-line error the CLI prints, its exit code, the exception to raise) for any exception: a
    PipelineError's own line, a full disk as a StorageError, anything else as an internal error."""
    from pipeline.train.guards import storage_error

    if isinstance(exc, PipelineError):
        return (str(exc).splitlines()[0] if str(exc) else type(exc).__name__), exc.exit_code, exc
    known = storage_error(exc) if isinstance(exc, Exception) else None
    if known is not None:
        return str(known), known.exit_code, known
    summary = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"internal error ({type(exc).__name__}: {summary})", 70, exc


def _outcome(make: Callable[[], T]) -> tuple[T | None, tuple[str, int] | None, BaseException | None]:
    """(result, (one-line error, exit code) or None, the exception to re-raise here) of make()."""
    try:
        return make(), None, None
    except Exception as exc:
        message, code, raised = one_line(exc)
        return None, (message, code), raised


def _raise_first(failures: list[tuple[int, tuple[str, int] | None]], own: BaseException | None) -> None:
    """Re-raise this rank's own error, or the first other rank's as RankFailed."""
    if own is not None:
        raise own
    for rank, failure in failures:
        if failure is not None:
            # The failed rank prints its own error and exits first; a launcher that stops the others then
            # (torchrun on one machine) reports that rank's exit code, and other machines' ranks print this.
            time.sleep(REPORT_GRACE_S)
            raise RankFailed(f"rank {rank} failed: {failure[0]}", failure[1])


def _gather(failure: tuple[str, int] | None, group: Any) -> list[tuple[int, tuple[str, int] | None]]:
    """Every rank's (rank, failure) through the given process group."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * ranks.world_size()
    dist.all_gather_object(gathered, (ranks.rank(), failure), group=group)
    return gathered


def once_per_machine(make: Callable[[], T], what: str, timeout_s: int) -> T:
    """make() on each machine's local rank 0 first, then on its other ranks (which reuse what it cached).

    The others wait at most timeout_s seconds, then fail with one line that says what they waited for; a
    failure of make() on any rank stops every rank with that rank's error instead of leaving them waiting.
    """
    if not is_distributed():
        return make()
    import torch.distributed as dist

    state()  # the process group the new group below joins
    first = ranks.is_local_main_process()
    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    result, failure, own = _outcome(make) if first else (None, None, None)
    for turn in ("first", "rest"):
        try:
            failures = _gather(failure, group)
        except RuntimeError:  # gloo's timeout (DistBackendError) or a rank that died
            raise TrainingError(
                f"rank {ranks.rank()} waited over {timeout_s} s for {what}, prepared once per machine "
                "by its first rank; if that is only slow, raise train.data_wait_timeout (seconds)"
            ) from None
        _raise_first(failures, own)
        if turn == "first" and not first:
            result, failure, own = _outcome(make)
    return result  # type: ignore[return-value]


def agree(make: Callable[[], T]) -> T:
    """make() on rank 0 only; every rank gets rank 0's result (picklable values), or rank 0's error.

    The other ranks wait in the broadcast (train.distributed_timeout) and, when make() failed on rank 0, stop
    with its one-line error and exit code instead of waiting for a rank that is gone.
    """
    if not is_distributed():
        return make()
    from accelerate.utils import broadcast_object_list

    state()  # the process group the broadcast uses
    result, failure, own = _outcome(make) if is_main_process() else (None, None, None)
    box: list[Any] = [(result, failure)]
    try:
        broadcast_object_list(box, from_process=0)
    except RuntimeError as exc:  # rank 0 is gone or silent past train.distributed_timeout
        raise peer_lost(exc) or exc from None
    result, failure = box[0]
    _raise_first([(0, failure)], own)
    return result  # type: ignore[return-value]


def peer_lost(exc: BaseException) -> TrainingError | None:
    """A one-line TrainingError when exc is a collective that failed because another rank is gone (its own
    output holds the reason) or timed out (train.distributed_timeout); None for any other error."""
    text = str(exc)
    if not is_distributed() or not isinstance(exc, RuntimeError):
        return None
    if "Connection reset by peer" in text or "Connection closed by peer" in text:
        why = "another rank stopped (its own output says why)"
    elif "timed out" in text.lower() or "timeout" in text.lower():
        why = "another rank did not answer within train.distributed_timeout"
    else:
        return None
    return TrainingError(f"rank {ranks.rank()} stopped: {why}")


def prepare_assets(spec: ModelSpec, timeout_s: int = DEFAULT_TIMEOUT_S) -> Path:
    """Resolve (convert or download) the base model once per machine before any rank loads it.

    pipeline.models.assets converts under a file lock already; running it on the local main rank first means
    the other ranks find the prepared folder instead of queueing on the lock or downloading again.
    """
    from pipeline.models.assets import resolve_model

    return once_per_machine(
        lambda: resolve_model(spec.name, spec.revision), f"the base model {spec.name}", timeout_s
    )


def load_alone() -> None:
    """Let this rank load models on its own from here on (rank 0 after training, for checks and evaluation).

    Under ZeRO-3 transformers partitions every from_pretrained across all ranks (a collective), which the
    ranks waiting for rank 0 never join: a mismatch on gloo, a hang until the timeout on NCCL.
    """
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled, unset_hf_deepspeed_config

    if is_deepspeed_zero3_enabled():
        unset_hf_deepspeed_config()


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
