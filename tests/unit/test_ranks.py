"""pipeline.ranks: the one place a process learns its rank, local rank, world size and the sharding asked for."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline import ranks

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"
LAUNCHER_VARIABLES = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"}
MPI_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALRANKID")
MPI_VARIABLES += ("OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE")
MPI_VARIABLES += ("MV2_COMM_WORLD_LOCAL_RANK",)


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No launcher variables at all: a plain `python -m pipeline` process."""
    for name in (*LAUNCHER_VARIABLES, *MPI_VARIABLES, "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_single_process_is_rank_0_of_1(alone: pytest.MonkeyPatch) -> None:
    assert (ranks.rank(), ranks.local_rank(), ranks.world_size()) == (0, 0, 1)
    assert ranks.is_main_process() and ranks.is_local_main_process() and not ranks.is_distributed()
    assert ranks.sharding_requested() is None


def test_torchrun_variables_place_the_process(alone: pytest.MonkeyPatch) -> None:
    alone.setenv("RANK", "3")
    alone.setenv("LOCAL_RANK", "1")
    alone.setenv("WORLD_SIZE", "4")
    assert (ranks.rank(), ranks.local_rank(), ranks.world_size()) == (3, 1, 4)
    assert ranks.is_distributed() and not ranks.is_main_process() and not ranks.is_local_main_process()


def test_mpi_variables_count_as_accelerate_reads_them(alone: pytest.MonkeyPatch) -> None:
    """mpirun sets no RANK/WORLD_SIZE; accelerate's CPU state reads Open MPI's own, and so does this."""
    alone.setenv("OMPI_COMM_WORLD_RANK", "2")
    alone.setenv("OMPI_COMM_WORLD_SIZE", "3")
    alone.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    assert (ranks.rank(), ranks.local_rank(), ranks.world_size()) == (2, 0, 3)
    assert ranks.is_local_main_process() and not ranks.is_main_process()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ACCELERATE_USE_FSDP", "true", "FSDP"),
        ("ACCELERATE_USE_FSDP", "True", "FSDP"),
        ("ACCELERATE_USE_DEEPSPEED", "true", "DEEPSPEED"),
        ("ACCELERATE_USE_FSDP", "false", None),
    ],
)
def test_sharding_follows_the_launchers_variables(
    alone: pytest.MonkeyPatch, variable: str, value: str, expected: str | None
) -> None:
    alone.setenv(variable, value)
    assert ranks.sharding_requested() == expected


def test_no_other_module_reads_the_launchers_variables() -> None:
    """Every rank, local rank and world size question goes through pipeline.ranks."""
    readers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "ranks.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in LAUNCHER_VARIABLES:
                readers.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} reads {node.value}")
    assert not readers, "\n".join(readers)
