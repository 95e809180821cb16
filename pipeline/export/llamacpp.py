"""llama.cpp, from its own virtualenv (`make llamacpp-env`): find it and run llamacpp_worker.py there.

The main environment never imports llama_cpp; each call is one subprocess with a JSON request and answer."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from pipeline.errors import AssetError, PipelineError

ENV_VARIABLE = "PIPELINE_LLAMACPP_ENV"
ENV_FOLDER = ".venv-llamacpp"
WORKER = Path(__file__).with_name("llamacpp_worker.py")
TIMEOUT = 1800  # seconds: scoring a 1B model's eval split on 2 cores stays well inside


def find_llamacpp_env() -> Path | None:
    """llama.cpp's virtualenv: $PIPELINE_LLAMACPP_ENV, else .venv-llamacpp in the working folder or the project's."""
    given = os.environ.get(ENV_VARIABLE)
    project = Path(__file__).resolve().parents[2]
    candidates = [Path(given).expanduser()] if given else [Path.cwd() / ENV_FOLDER, project / ENV_FOLDER]
    for folder in candidates:
        if (folder / "bin" / "python").is_file() and any(folder.glob("lib/python3*/site-packages/llama_cpp")):
            return folder.absolute()
    return None


def missing_env_line() -> str:
    """The one line that says llama.cpp is not installed and how to get it."""
    where = os.environ.get(ENV_VARIABLE) or ENV_FOLDER
    return (
        f"no llama.cpp environment at {where}: build it with `make llamacpp-env` (compiles llama-cpp-python, "
        f"a few minutes) or set {ENV_VARIABLE} to one"
    )


def require_llamacpp_env(why: str) -> Path:
    """llama.cpp's virtualenv, or a one-line error naming `make llamacpp-env` and what needed it."""
    folder = find_llamacpp_env()
    if folder is None:
        raise PipelineError(f"{why} needs llama.cpp: {missing_env_line()}.")
    return folder


def call(env: Path, request: dict[str, Any], where: Path) -> dict[str, Any]:
    """Run one worker request in env; a failure is an AssetError naming where (the file being checked)."""
    threads = max(1, len(os.sched_getaffinity(0)))
    payload = json.dumps({"threads": threads, **request})
    try:
        done = subprocess.run(
            [str(env / "bin" / "python"), str(WORKER)],
            input=payload,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )
    except subprocess.TimeoutExpired:
        raise AssetError(f"{where}: llama.cpp did not answer within {TIMEOUT} s.") from None
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise AssetError(f"{where}: llama.cpp failed ({tail}).") from None
    if "error" in answer:
        raise AssetError(f"{where}: llama.cpp cannot use this file ({answer['error']}).")
    return answer
