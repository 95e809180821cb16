"""Which patches are active in this process, and one WARNING line for each that had to turn itself off."""

from __future__ import annotations

import logging
from importlib import metadata

log = logging.getLogger(__name__)

_STATE: dict[str, str] = {}  # patch name -> "on", or "off: <why>"


def library_version(distribution: str) -> str:
    """'<name> <version>' of an installed distribution (for messages that must say which release changed)."""
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def record(name: str, active: bool, why_off: str = "") -> bool:
    """Remember whether a patch is on in this process; returns `active`."""
    _STATE[name] = "on" if active else f"off: {why_off}" if why_off else "off"
    return active


def turned_off(name: str, library: str, problem: str, effect: str) -> bool:
    """A patch that cannot apply to the installed library: record it and warn once per process; returns False."""
    why = f"{library_version(library)}: {problem}"
    if _STATE.get(name, "").removeprefix("off: ") != why:
        log.warning("Speed lever '%s' is off (%s); %s.", name, why, effect)
    return record(name, False, why)


def active_patches() -> dict[str, str]:
    """Every patch this process decided on, with its state (for manifest.json and `pipeline env`)."""
    return dict(sorted(_STATE.items()))


def reset() -> None:
    """Forget earlier decisions (a new run in the same process records, and warns about, its own)."""
    _STATE.clear()
