"""Progress of a data phase (reading, validation, hygiene, tokenization) that a person can see: a tqdm bar
on a terminal, otherwise one line on stderr every few seconds with records/s; phases shorter than a couple
of seconds show nothing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DELAY_S = 2.0  # a phase shorter than this shows nothing
LINE_EVERY_S = 5.0  # seconds between lines when stderr is not a terminal


class Progress:
    """Counts records of one phase and shows them (see the module docstring)."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "records") -> None:
        self.desc, self.total, self.unit, self.count = desc, total, unit, 0
        self.start = self.last = time.monotonic()
        self.bar: Any = None
        self.quiet = os.environ.get("PIPELINE_PROGRESS", "1").strip().lower() in ("0", "false", "off", "no")
        if not self.quiet and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", delay=DELAY_S, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        """Add n records; on a non-terminal, print a line when LINE_EVERY_S passed since the last one."""
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if not self.quiet and now - self.start >= DELAY_S and now - self.last >= LINE_EVERY_S:
            self.last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        rate = self.count / max(now - self.start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        tail = f" in {now - self.start:.1f} s" if final else ""
        print(f"{self.desc}: {self.count}{of} {self.unit} ({rate:,.0f} {self.unit}/s){tail}", file=sys.stderr)

    def close(self) -> None:
        """Finish the bar; a phase that printed lines ends with a final one."""
        if self.bar is not None:
            self.bar.close()
        elif self.last != self.start:
            self._line(time.monotonic(), final=True)


@contextmanager
def progress(desc: str, total: int | None = None, unit: str = "records") -> Iterator[Progress]:
    """A Progress for the duration of the block."""
    shown = Progress(desc, total, unit)
    try:
        yield shown
    finally:
        shown.close()


def counted(items: Any, desc: str, total: int | None = None, unit: str = "records") -> Iterator[Any]:
    """Iterate items with progress shown."""
    with progress(desc, total, unit) as shown:
        for item in items:
            yield item
            shown.update()
