"""The trainer's side of the event log: a TrainerCallback that turns transformers' hooks into typed events
(started, step, held-out evaluation, checkpoint, trained) on the main process."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from pipeline.runs.events import Checkpoint, Evaluation, EventLog, Started, Step, Trained

# Log keys a Step event has its own field for (or that are not per-step figures); every other number the
# trainer logs (DPO's rewards/margins and rewards/accuracies, GRPO's reward and frac_reward_zero_std, ...) is
# kept on the event as an extra field, which the studio's preference page charts.
STEP_LOGS = {"loss", "learning_rate", "grad_norm", "epoch", "num_tokens", "step"}


def _number(value: Any) -> float | None:
    """A finite float, or None (missing, not a number, NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class EventEmitter(TrainerCallback):
    """Emits the training events of a run to its EventLog; silent on every rank but the main one."""

    def __init__(self, events: EventLog) -> None:
        self.events = events
        self.started = 0.0
        self.first_step = 0
        self.last_tokens: tuple[float, float] | None = None  # (tokens seen, time) at the previous step event

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.started, self.first_step = time.perf_counter(), state.global_step
        if state.is_world_process_zero:
            self.events.emit(
                Started(step=state.global_step, total_steps=state.max_steps, world_size=args.world_size)
            )

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        # A step that logs is reported by on_log (with its loss); the others here, so a viewer moves every step.
        if state.is_world_process_zero and not control.should_log:
            self.events.emit(self._step(state, {}))

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if not state.is_world_process_zero or not logs:
            return
        if "eval_loss" in logs:
            held_out = {k.removeprefix("eval_"): _number(v) for k, v in logs.items() if k.startswith("eval_")}
            self.events.emit(Evaluation(phase="held_out", step=state.global_step, metrics=held_out))
        if "loss" in logs:
            self.events.emit(self._step(state, logs))

    def _step(self, state: Any, logs: dict[str, Any]) -> Step:
        now, done = time.perf_counter(), state.global_step - self.first_step
        rate = None
        tokens = _number(logs.get("num_tokens"))
        if tokens is not None:
            if self.last_tokens is not None and now > self.last_tokens[1]:
                rate = (tokens - self.last_tokens[0]) / (now - self.last_tokens[1])
            self.last_tokens = (tokens, now)
        per_step = (now - self.started) / done if done > 0 else None
        left = per_step * (state.max_steps - state.global_step) if per_step is not None else None
        return Step(
            step=state.global_step,
            total_steps=state.max_steps,
            epoch=_number(state.epoch),
            loss=_number(logs.get("loss")),
            learning_rate=_number(logs.get("learning_rate")),
            grad_norm=_number(logs.get("grad_norm")),
            tokens_per_second=rate,
            seconds_left=left,
            **{k: _number(v) for k, v in logs.items() if k not in STEP_LOGS and _number(v) is not None},
        )

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            self.events.emit(Checkpoint(step=state.global_step, path=str(folder)))

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.is_world_process_zero:
            losses = [e["loss"] for e in state.log_history if "loss" in e]
            seconds = time.perf_counter() - self.started
            self.events.emit(
                Trained(step=state.global_step, loss=_number(losses[-1]) if losses else None, seconds=seconds)
            )
