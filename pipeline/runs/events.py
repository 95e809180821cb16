"""What a run reports as it goes: typed events, handed to callbacks and appended to the run's events.jsonl.

One JSON object a line, appended and flushed as each happens, so a reader (`pipeline` studio, `tail -f`)
sees a run live. Written by rank 0 only under `accelerate launch`. The kinds, in the order a run emits them:
prepared (inputs checked, run folder open) -> started (training begins) -> step (every train.logging_steps),
evaluation (held-out loss while training; base and adapted scores), checkpoint -> trained -> finished; or
stopped (a stop request or Ctrl-C: checkpointed, resumable) or failed (its one-line error).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

log = logging.getLogger(__name__)
EVENTS = "events.jsonl"
SCHEMA_VERSION = 1


class EventBase(BaseModel):
    """Fields every event has; unknown fields of newer writers are kept, not refused."""

    model_config = ConfigDict(extra="allow", frozen=True)
    schema_version: int = SCHEMA_VERSION
    time: float = Field(default_factory=time.time, description="Unix time (seconds) the event happened.")


class Prepared(EventBase):
    kind: Literal["prepared"] = "prepared"
    recipe: str
    stage: str
    run_dir: str
    train_examples: int | None  # None: streamed (data.streaming)
    eval_examples: int
    resumed_from: str | None = None  # the checkpoint folder a resumed run continues from


class Started(EventBase):
    kind: Literal["started"] = "started"
    step: int  # the first step (> 0 when resuming)
    total_steps: int
    world_size: int = 1


class Step(EventBase):
    kind: Literal["step"] = "step"
    step: int
    total_steps: int
    epoch: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None  # all ranks, since the previous step event
    seconds_left: float | None = None  # at the mean step time so far


class Evaluation(EventBase):
    kind: Literal["evaluation"] = "evaluation"
    phase: Literal["held_out", "base", "adapted"]  # held_out: eval loss while training (train.eval_steps)
    step: int | None = None
    metrics: dict[str, float | None]


class Checkpoint(EventBase):
    kind: Literal["checkpoint"] = "checkpoint"
    step: int
    path: str


class Trained(EventBase):
    kind: Literal["trained"] = "trained"
    step: int
    loss: float | None
    seconds: float


class Stopped(EventBase):
    kind: Literal["stopped"] = "stopped"
    step: int | None
    message: str  # what stopped it and how to resume


class Finished(EventBase):
    kind: Literal["finished"] = "finished"
    seconds: float
    metrics: dict[str, float | None]  # headline figures (pipeline.runs.metrics.headline)


class Failed(EventBase):
    kind: Literal["failed"] = "failed"
    error: str  # the one line the CLI prints
    exit_code: int


Event = Annotated[
    Prepared | Started | Step | Evaluation | Checkpoint | Trained | Stopped | Finished | Failed,
    Field(discriminator="kind"),
]
_EVENT: TypeAdapter[Any] = TypeAdapter(Event)
Callback = Callable[[Any], None]  # called with each Event


class EventLog:
    """Hands each event to the callbacks and appends it to a run folder's events.jsonl (when one is given)."""

    def __init__(self, callbacks: Sequence[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        self.path: Path | None = None
        self.last_step: int | None = None  # the step of the latest event that had one

    def write_to(self, run_dir: Path) -> None:
        """From now on, also append every event to run_dir/events.jsonl."""
        self.path = Path(run_dir) / EVENTS

    def emit(self, event: EventBase) -> None:
        """Append the event (one line, flushed) and call every callback with it; a failing callback is
        logged and dropped, so a broken viewer never stops a run."""
        self.last_step = getattr(event, "step", None) or self.last_step
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(event.model_dump_json() + "\n")
                handle.flush()
        for callback in list(self.callbacks):
            try:
                callback(event)
            except Exception as exc:  # a viewer's bug must not end training
                log.warning("event callback %r failed (%s: %s); dropped", callback, type(exc).__name__, exc)
                self.callbacks.remove(callback)


def parse_event(line: str) -> EventBase | None:
    """One events.jsonl line as its event; None for a line cut short (the writer is mid-line) or of an
    unknown kind (a newer writer)."""
    try:
        return _EVENT.validate_python(json.loads(line))
    except (json.JSONDecodeError, ValidationError):
        return None


def read_events(run_dir: Path) -> list[EventBase]:
    """Every complete event of a run folder so far (none when it has no events.jsonl: an older run)."""
    path = Path(run_dir) / EVENTS
    if not path.is_file():
        return []
    return [e for e in map(parse_event, _lines(path.read_text(encoding="utf-8"))) if e is not None]


def _lines(text: str) -> Iterable[str]:
    return (line for line in text.splitlines() if line.strip())
