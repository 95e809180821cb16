"""Writing outputs safely: atomic files and folders (a temporary path beside the target, then a rename) and
child paths that cannot climb out of their folder. Every stage writes through here."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import RecipeError


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside target; on success it replaces target, on error it is removed."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON (sorted keys, indented, NaN as null) atomically."""
    write_text(path, json.dumps(_finite(data), indent=2, sort_keys=True) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def path_exists(text: str | Path, kind: Literal["any", "file", "dir"] = "any") -> bool:
    """True when text names an existing path (a file or a folder when kind says so). A string that cannot be a
    path on this system, such as a name longer than its limit (a long `data.system_prompt=...` override), is
    none, where pathlib raises OSError."""
    path = Path(text)
    try:
        return path.is_file() if kind == "file" else path.is_dir() if kind == "dir" else path.exists()
    except OSError:  # ENAMETOOLONG; pathlib answers False only for a missing path
        return False


def safe_child(root: Path, name: str, what: str) -> Path:
    """root/name, refusing names that are absolute or climb out of root (../)."""
    child = Path(root) / name
    if (
        Path(name).is_absolute()
        or ".." in Path(name).parts
        or not child.resolve().is_relative_to(Path(root).resolve())
    ):
        raise RecipeError(
            f"{what} '{name}' would write outside {root}; use a plain name without '/' or '..'."
        )
    return child
