"""Ctrl-C / SIGTERM / a stop request during training: finish the current step, save a checkpoint, stop, say how
to resume."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from transformers import TrainerCallback

from pipeline.errors import TrainingError

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(TrainingError):
    """Training stopped on a signal after saving a checkpoint; exit code 128 + signal number (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def any_rank(flag: bool, device: Any) -> bool:
    """True if flag is set on any process of a distributed run (every rank must take the same branch)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class StopRequest(Protocol):
    """What finetune(stop=...) accepts: anything with is_set(), such as a threading.Event."""

    def is_set(self) -> bool: ...


class StopOnSignal(TrainerCallback):
    """Records SIGINT/SIGTERM (or a set stop request); at the end of the current optimizer step asks the
    Trainer to save and stop.

    A second signal gives up at once (KeyboardInterrupt) without waiting for the step.
    """

    def __init__(self, stop: StopRequest | None = None) -> None:
        self.signum: int | None = None
        self.stopped_at: int | None = None
        self.stop = stop
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            self.restore()
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "%s: saving a checkpoint after this step, then stopping (again to abort now).",
            signal.Signals(signum).name,
        )

    def install(self) -> None:
        """Route SIGINT and SIGTERM to this callback (main thread only; elsewhere handlers stay as is)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}

    def restore(self) -> None:
        """Put the previous signal handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextmanager
    def active(self) -> Iterator[StopOnSignal]:
        """Handle SIGINT/SIGTERM for the duration of the block (typically `trainer.train()`)."""
        self.install()
        try:
            yield self
        finally:
            self.restore()

    def raise_if_stopped(self, resume_command: str) -> None:
        """Raise Interrupted (exit 130 for SIGINT or a stop request, 143 for SIGTERM) if training stopped early."""
        if self.signum is not None and self.stopped_at is not None:
            requested = self.stop is not None and self.stop.is_set() and self.signum == signal.SIGINT
            why = "stop requested" if requested else signal.Signals(self.signum).name
            raise Interrupted(
                f"{why}: training stopped at step {self.stopped_at} and saved "
                f"checkpoint-{self.stopped_at}; resume with: {resume_command}",
                self.signum,
            )

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.signum is None and self.stop is not None and self.stop.is_set():
            self.signum = signal.SIGINT  # a stop request ends the run as Ctrl-C does
        if any_rank(self.signum is not None, args.device):
            self.signum = self.signum or signal.SIGTERM  # another rank got it; stop the same way
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control
