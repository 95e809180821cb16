"""No rank waits for a rank that failed, and a waiting rank says what it waits for.

Two 2-process DDP launches on CPU with test hooks (launched.DRIVER): the first rank of the machine tokenizes
slowly while the other waits, then rank 0's post-training check fails; in the second the slow tokenization
outlasts train.data_wait_timeout.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from launched import environment, errors, launch, only_run, write_driver


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from conftest import write_chat_files, write_tiny_recipe

    root = tmp_path_factory.mktemp("no-hang")
    return write_tiny_recipe(
        root / "tiny-hang.yaml",
        tiny_model_dir,
        write_chat_files(root),
        root / "runs",
        train={"max_steps": 2, "group_by_length": False},
        eval={"enabled": False},
    )


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_a_failed_check_on_rank_0_stops_every_rank_with_its_error(recipe: Path) -> None:
    driver = write_driver(recipe.parent)
    # Rank 1 waits 8 s for the data (the limit is 60 s), trains, then waits for rank 0's checks (60 s limit).
    started = time.monotonic()
    result = launch(
        "cpu-ddp.yaml", str(recipe), driver=driver, env=environment(SLOW_PREPARE_S="8", FAIL_CHECK="1")
    )
    seconds = time.monotonic() - started
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "training" in output and only_run(recipe.parent / "runs")  # it got past the slow data and trained
    stub = "post-training check failed: a stub check that always fails"
    assert sorted(_error_lines(output)) == sorted([f"error: {stub}", f"error: rank 0 failed: {stub}"]), (
        errors(result)
    )
    assert seconds < 60, f"the ranks took {seconds:.0f} s to stop"


def test_a_rank_waiting_too_long_for_the_data_fails_saying_so(recipe: Path) -> None:
    driver = write_driver(recipe.parent)
    started = time.monotonic()
    result = launch(
        "cpu-ddp.yaml",
        str(recipe),
        "train.data_wait_timeout=5",  # after launch()'s 60 s: the last override wins
        driver=driver,
        env=environment(SLOW_PREPARE_S="40"),
    )
    seconds = time.monotonic() - started
    assert result.returncode != 0
    lines = _error_lines(result.stdout + result.stderr)
    assert lines == [
        "error: rank 1 waited over 5 s for the data (reading, hygiene, tokenizing) on the first rank of its "
        "machine; if that rank is only slow, raise train.data_wait_timeout (seconds)"
    ], errors(result)
    assert seconds < 40, "the waiting rank did not give up before the slow rank finished"
