"""Child processes the studio starts: training runs one at a time (the rest queued) and shipping/data tasks.

A job is a `python -m pipeline ...` command line, exactly what a person would type, with its output in a log
file under <runs>/.studio/jobs/. Stopping a training job sends SIGINT, the signal the CLI turns into a
checkpoint and exit 130 (pipeline.train.signals), so a stopped run resumes with `finetune --resume RUN`.
What a run reports is read from its run folder, never from the child, so the CLI's runs appear alike.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import PipelineError

Lane = Literal["train", "task"]
STOPPED = 130  # 128 + SIGINT: the exit code of a run stopped by Ctrl-C (pipeline.train.signals)
LOG_TAIL_BYTES = 8192


@dataclass
class Job:
    """One command the studio runs in a child process."""

    id: int
    lane: Lane
    label: str
    argv: list[str]
    log: Path
    state: str = "queued"  # queued, running, finished, failed, stopped, cancelled
    returncode: int | None = None
    queued: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    run: str | None = None  # the run folder's name a training job writes (found once it exists)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The last `limit` bytes of the job's output."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(max(0, self.log.stat().st_size - limit))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def as_dict(self) -> dict[str, Any]:
        """The job as JSON-ready data (with its output's tail)."""
        keys = ("id", "lane", "label", "state", "returncode", "queued", "started", "ended", "run")
        return {
            **{k: getattr(self, k) for k in keys},
            "command": " ".join(self.argv[2:]),
            "tail": self.tail(),
        }


def pipeline_argv(*args: str) -> list[str]:
    """The command line of `pipeline ARGS` in this interpreter (as the CLI would run it)."""
    return [sys.executable, "-m", "pipeline", *args]


class JobQueue:
    """Runs jobs in child processes: one at a time per lane (training runs queue behind each other)."""

    def __init__(self, runs_dir: Path, env: dict[str, str] | None = None) -> None:
        self.runs_dir = Path(runs_dir)
        self.folder = self.runs_dir / ".studio" / "jobs"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.jobs: dict[int, Job] = {}
        self._queues: dict[Lane, deque[Job]] = {"train": deque(), "task": deque()}
        self._running: dict[Lane, Job | None] = {"train": None, "task": None}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, lane: Lane, label: str, argv: list[str], run: str | None = None) -> Job:
        """Queue a command (run: the run folder it continues, for a resume); it starts at once when its lane
        is free."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            job_id = next(self._ids)
            job = Job(job_id, lane, label, argv, self.folder / f"{int(time.time())}-{job_id}.log", run=run)
            self.jobs[job_id] = job
            self._queues[lane].append(job)
            self._start_next(lane)
        return job

    def get(self, job_id: int) -> Job:
        """The job with this id; a PipelineError when there is none."""
        job = self.jobs.get(job_id)
        if job is None:
            raise PipelineError(f"no job {job_id} in this studio session.")
        return job

    def listing(self) -> list[Job]:
        """Every job of this session, newest first."""
        return sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)

    def running_for(self, run: str) -> Job | None:
        """The running training job that writes run folder `run`, if any."""
        job = self._running["train"]
        return job if job is not None and job.run == run else None

    def active_for(self, run: str) -> Job | None:
        """A queued or running training job that writes run folder `run` (a resume), if any."""
        return next(
            (
                j
                for j in self.jobs.values()
                if j.lane == "train" and j.run == run and j.state in ("queued", "running")
            ),
            None,
        )

    def stop(self, job_id: int) -> Job:
        """Stop a job: SIGINT to a running one (checkpoint, resumable), a queued one is dropped."""
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                self._queues[job.lane].remove(job)
                job.state, job.ended = "cancelled", time.time()
            elif job.state == "running" and job.process is not None:
                job.process.send_signal(signal.SIGINT)
        return job

    def shutdown(self) -> None:
        """Interrupt running jobs (they checkpoint) and drop queued ones; used when the studio exits."""
        for lane in self._queues:
            self._queues[lane].clear()
            job = self._running[lane]
            if job is not None and job.process is not None and job.process.poll() is None:
                job.process.send_signal(signal.SIGINT)

    def _start_next(self, lane: Lane) -> None:
        if self._running[lane] is not None or not self._queues[lane]:
            return
        job = self._queues[lane].popleft()
        before = self._run_folders() if lane == "train" else set()
        with job.log.open("wb") as log:
            job.process = subprocess.Popen(
                job.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
            )
        job.state, job.started = "running", time.time()
        self._running[lane] = job
        threading.Thread(target=self._watch, args=(job, before), daemon=True, name=f"job-{job.id}").start()

    def _run_folders(self) -> set[str]:
        if not self.runs_dir.is_dir():
            return set()
        return {p.name for p in self.runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}

    def _watch(self, job: Job, before: set[str]) -> None:
        assert job.process is not None
        while job.process.poll() is None:
            if job.lane == "train" and job.run is None:
                job.run = self._new_run(before)
            time.sleep(0.2)
        if job.lane == "train" and job.run is None:
            job.run = self._new_run(before)
        with self._lock:
            job.returncode = job.process.returncode
            job.state = {0: "finished", STOPPED: "stopped"}.get(job.returncode, "failed")
            job.ended = time.time()
            self._running[job.lane] = None
            self._start_next(job.lane)

    def _new_run(self, before: set[str]) -> str | None:
        new = sorted(self._run_folders() - before)
        return new[0] if new else None
