"""The ledger of run folders: one summary row per run, read through RunRecord and cached by file times.

A run folder's summary is recomputed only when one of the files it is read from changed (size or mtime), so the
ledger of hundreds of runs costs one stat() per file per request; a run that trains is re-read on each change.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.runs.events import EVENTS
from pipeline.runs.manifest import MANIFEST
from pipeline.runs.metrics import METRICS
from pipeline.runs.record import RECIPE, RunRecord

WATCHED = (RECIPE, MANIFEST, METRICS, EVENTS)


@dataclass
class RunSummary:
    """What the ledger shows of one run folder."""

    folder: str  # the folder's name under the runs folder (the run's id in URLs)
    recipe: str
    state: str
    stage: str = ""
    base: str = ""
    method: str = ""
    data: str = ""  # the first 12 hex digits of the training files' SHA-256 (the data fingerprint)
    started: float | None = None  # Unix time of the first event (or the folder's mtime)
    seconds: float | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_second: float | None = None
    roofline_share: float | None = None  # of the machine's measured GEMM peak (pipeline.train.roofline)
    metrics: dict[str, float | None] = field(default_factory=dict)
    gate: bool | None = None  # the regression gate passed (None: not evaluated)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return dict(self.__dict__)


def _stamp(folder: Path) -> tuple[tuple[int, int], ...]:
    stamps = []
    for name in WATCHED:
        try:
            info = os.stat(folder / name)
            stamps.append((info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append((0, -1))
    return tuple(stamps)


def _data_fingerprint(record: RunRecord) -> str:
    if record.manifest is None:
        return ""
    stamps = [str(f.stamp()) for f in record.manifest.data.files if f.split == "train"]
    if not stamps:
        return ""
    import hashlib

    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:12]


def summarize(record: RunRecord) -> RunSummary:
    """One ledger row from a run record: recipe, stage, base, method, data, times, last step, headline."""
    recipe = record.recipe or {}
    summary = RunSummary(
        folder=record.folder.name,
        recipe=record.name,
        state=record.state,
        stage=str((recipe.get("train") or {}).get("stage", "sft")),
        base=str((recipe.get("model") or {}).get("name", "")),
        method=str((recipe.get("adapter") or {}).get("method", "lora")),
        data=_data_fingerprint(record),
    )
    for event in record.events:
        kind = getattr(event, "kind", "")
        summary.started = summary.started or event.time
        if kind == "step":
            summary.step, summary.total_steps = event.step, event.total_steps  # type: ignore[attr-defined]
            summary.loss = event.loss if event.loss is not None else summary.loss  # type: ignore[attr-defined]
            rate = event.tokens_per_second  # type: ignore[attr-defined]
            summary.tokens_per_second = rate if rate is not None else summary.tokens_per_second
        elif kind == "started":
            summary.total_steps = event.total_steps  # type: ignore[attr-defined]
    if record.events:
        summary.seconds = record.events[-1].time - record.events[0].time
    if record.metrics is not None:
        summary.metrics = record.metrics.headline()
        if record.metrics.train is not None:
            summary.seconds = record.metrics.train.seconds
            summary.tokens_per_second = record.metrics.train.tokens_per_second or summary.tokens_per_second
            summary.roofline_share = record.metrics.train.roofline_share
        gate = record.metrics.gate or {}
        summary.gate = gate.get("passed") if gate.get("checks") else None
    if summary.started is None:
        summary.started = record.folder.stat().st_mtime
    return summary


class RunsIndex:
    """Summaries of every run folder under `root`, each re-read only when its files changed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[str, tuple[tuple[tuple[int, int], ...], RunSummary | None]] = {}
        self._lock = threading.Lock()

    def folder(self, name: str) -> Path:
        """The run folder called name under the root; a PipelineError for anything else (no ../ escapes)."""
        from pipeline.files import safe_child

        path = safe_child(self.root, name, "run")
        if not path.is_dir():
            raise PipelineError(f"{self.root}: no run folder '{name}'.")
        return path

    def summaries(self) -> list[RunSummary]:
        """Every run folder's summary, newest first."""
        if not self.root.is_dir():
            return []
        rows = []
        with self._lock:
            seen = set()
            for entry in os.scandir(self.root):
                if not entry.is_dir() or entry.name.startswith("."):
                    continue
                seen.add(entry.name)
                summary = self._summary(Path(entry.path))
                if summary is not None:
                    rows.append(summary)
            for gone in set(self._cache) - seen:
                del self._cache[gone]
        return sorted(rows, key=lambda s: s.started or 0, reverse=True)

    def _summary(self, folder: Path) -> RunSummary | None:
        stamp = _stamp(folder)
        cached = self._cache.get(folder.name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        summary = None
        if any(size >= 0 for _, size in stamp):
            try:
                summary = summarize(RunRecord.load(folder))
            except PipelineError:
                summary = None
        self._cache[folder.name] = (stamp, summary)
        return summary
