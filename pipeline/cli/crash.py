"""An unexpected error (a bug, not a user error) becomes one line naming the log file that holds its traceback."""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

from pipeline.files import write_text
from pipeline.models.assets import cache_dir

EXIT_INTERNAL = 70  # EX_SOFTWARE: an internal error, distinct from the exit codes of user errors (1-7)
SECRET_OPTIONS = ("--api-key", "--token")


def _redacted(argv: list[str]) -> list[str]:
    """The command line with the values of secret options replaced by ***."""
    shown: list[str] = []
    for index, item in enumerate(argv):
        if index and argv[index - 1] in SECRET_OPTIONS:
            item = "***"
        elif item.startswith(tuple(f"{option}=" for option in SECRET_OPTIONS)):
            item = item.split("=", 1)[0] + "=***"
        shown.append(item)
    return shown


def write_crash_log(exc: BaseException, argv: list[str]) -> Path:
    """Write the command line, versions and traceback to <cache>/crashes/<UTC time>-<pid>.log; return its path."""
    import platform

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = cache_dir() / "crashes" / f"{stamp}-{os.getpid()}.log"
    lines = [
        f"command: pipeline {' '.join(_redacted(argv))}",
        f"python: {sys.version.split()[0]} on {platform.platform()}",
        "",
        *traceback.format_exception(type(exc), exc, exc.__traceback__),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "\n".join(line.rstrip("\n") for line in lines) + "\n")
    return path


def report_internal_error(exc: BaseException, argv: list[str]) -> int:
    """Print one line for an unexpected exception (its traceback goes to a log file) and return the exit code."""
    summary = (str(exc).strip().splitlines() or [""])[0][:300]
    what = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    try:
        where = f"the full traceback is in {write_crash_log(exc, argv)}"
    except OSError as log_error:
        where = f"the traceback could not be saved ({log_error}); rerun with PIPELINE_TRACEBACK=1 to see it"
    print(
        f"error: internal error ({what}); this is a bug in pipeline, not in your input: {where}. "
        "Please report it with the output of `pipeline env`.",
        file=sys.stderr,
    )
    return EXIT_INTERNAL
