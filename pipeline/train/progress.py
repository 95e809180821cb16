"""The terminal's view of a run: a rich progress bar driven by the run's events (pipeline.runs.events)."""

from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.runs.events import Started, Step


class ProgressBar:
    """An event callback: steps, loss and time left while training; nothing before or after."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None
        self.last_loss: float | None = None

    def __call__(self, event: Any) -> None:
        """Start on `started`, advance on `step`, close on any event after training."""
        if isinstance(event, Started):
            self.close()
            self.progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=event.total_steps, completed=event.step, loss="-"
            )
        elif isinstance(event, Step) and self.progress is not None:
            if event.loss is not None:
                self.last_loss = event.loss
            loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "-"
            self.progress.update(self.task, completed=event.step, loss=loss)
        elif event.kind not in ("evaluation", "checkpoint"):
            self.close()

    def close(self) -> None:
        """Take the bar off the terminal (idempotent)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
