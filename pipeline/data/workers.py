"""Run a function over chunks of a record list in forked worker processes (data.num_proc), results in order.

The records reach the workers through fork (copy-on-write), never through pickling; only each chunk's
result travels back. Small lists, or num_proc 1, run in this process.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pipeline.data.progress import progress

T = TypeVar("T")
_STATE: dict[str, Any] = {}  # what forked workers read: set in the parent just before the fork


def default_num_proc() -> int:
    """Worker processes when data.num_proc is not set: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run(task: tuple[int, int]) -> Any:
    start, number = task
    return _STATE["fn"](_STATE["records"], start, number)


def map_chunks(
    fn: Callable[[list[Any], int, int], T],
    records: list[Any],
    chunk: int,
    num_proc: int,
    desc: str,
    parallel_min: int | None = None,
) -> Iterator[T]:
    """fn(records, start, chunk_number) for start = 0, chunk, 2*chunk, ...; in num_proc forked processes when
    there are at least parallel_min records (default 4 chunks). Progress counts records."""
    tasks = [(start, number) for number, start in enumerate(range(0, len(records), chunk))]
    parallel = num_proc > 1 and len(records) >= (parallel_min if parallel_min is not None else 4 * chunk)
    with progress(desc, len(records)) as shown:
        if not parallel:
            for start, number in tasks:
                yield fn(records, start, number)
                shown.update(min(chunk, len(records) - start))
            return
        _STATE.update(fn=fn, records=records)
        gc.freeze()  # the workers' garbage collector never walks (and so never copies) the parent's objects
        os.environ["TOKENIZERS_PARALLELISM"] = (
            "false"  # the workers are the parallelism; avoids fork warnings
        )
        try:
            with multiprocessing.get_context("fork").Pool(num_proc) as pool:
                for (start, _), result in zip(tasks, pool.imap(_run, tasks), strict=True):
                    yield result
                    shown.update(min(chunk, len(records) - start))
        finally:
            _STATE.clear()
            gc.unfreeze()
