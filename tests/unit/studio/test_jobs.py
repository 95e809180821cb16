"""The studio's child-process queue: one job per lane at a time, SIGINT to stop, exit 130 = stopped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pipeline.studio.jobs import Job, JobQueue

# A stand-in for `pipeline finetune`: prints, then waits; SIGINT -> exit 130 as the CLI does after its checkpoint.
CHILD = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGINT, lambda *a: sys.exit(130))\n"
    "print('started', flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
)


def _wait(job: Job, states: tuple[str, ...], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while job.state not in states:
        assert time.monotonic() < deadline, f"job {job.id} stayed {job.state}"
        time.sleep(0.05)


def test_training_jobs_run_one_at_a_time_and_stop_with_sigint(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    first = queue.submit("train", "first", [sys.executable, "-c", CHILD, "30"])
    second = queue.submit("train", "second", [sys.executable, "-c", CHILD, "0"])
    assert first.state == "running" and second.state == "queued"
    _wait(first, ("running",))
    deadline = time.monotonic() + 10
    while "started" not in first.tail():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    queue.stop(first.id)
    _wait(first, ("stopped",))
    assert first.returncode == 130
    _wait(second, ("finished",))
    assert second.returncode == 0 and "started" in second.tail()


def test_a_queued_job_can_be_dropped_and_a_failure_is_failed(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    running = queue.submit("task", "fails", [sys.executable, "-c", "import sys; sys.exit(3)"])
    waiting = queue.submit("task", "dropped", [sys.executable, "-c", CHILD, "0"])
    queue.stop(waiting.id)
    _wait(running, ("failed",))
    assert running.returncode == 3 and waiting.state == "cancelled"
    assert [j.id for j in queue.listing()] == [waiting.id, running.id]


def test_a_training_job_finds_the_run_folder_it_writes(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path)
    (tmp_path / "old-20261201-000000").mkdir()
    code = "import os, sys; os.mkdir(os.path.join(sys.argv[1], 'new-20261202-000000'))"
    job = queue.submit("train", "writes", [sys.executable, "-c", code, str(tmp_path)])
    _wait(job, ("finished",))
    assert job.run == "new-20261202-000000"
