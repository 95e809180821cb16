"""No rank waits for a rank that failed, and a waiting rank says what it waits for.

Two 2-process DDP launches on CPU with test hooks (launched.DRIVER): the first rank of the machine tokenizes
slowly while the other waits, then rank 0's post-training check fails; in the second the slow tokenization
outlasts train.data_wait_timeout.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from launched import environment, errors, launch, launch_two_nodes, only_run, tiny_recipe, write_driver


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return tiny_recipe(
        tmp_path_factory.mktemp("no-hang"),
        tiny_model_dir,
        "tiny-hang",
        train={"max_steps": 2, "group_by_length": False},
        eval={"enabled": False},
    )


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


STUB = "post-training check failed: a stub check that always fails"


def test_a_slow_first_rank_is_waited_for_and_its_failed_check_stops_every_rank(recipe: Path) -> None:
    driver = write_driver(recipe.parent)
    # Rank 1 waits 8 s for the data (the limit is 120 s), trains, then waits for rank 0's checks (120 s limit).
    started = time.monotonic()
    env = environment(SLOW_PREPARE_S="8", FAIL_CHECK="1")
    result = launch("cpu-ddp.yaml", str(recipe), driver=driver, env=env)
    seconds = time.monotonic() - started
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "training" in output and only_run(recipe.parent / "runs")  # past the slow data, it trained
    lines = _error_lines(output)
    # Rank 0 reports its failure; rank 1 stops too, with the same error unless the launcher stopped it first.
    assert lines[0] == f"error: {STUB}" and set(lines[1:]) <= {f"error: rank 0 failed: {STUB}"}, errors(
        result
    )
    assert 8 < seconds < 120, f"{seconds:.0f} s: a rank waited out the collective timeout"


def test_rank_0s_failure_reaches_the_other_machine(recipe: Path) -> None:
    """Two machines (two launches on 127.0.0.1): no launcher stops the other's rank, yet it stops at once
    with rank 0's error and exit code instead of waiting out the timeout."""
    driver = write_driver(recipe.parent)
    started = time.monotonic()
    nodes = launch_two_nodes(
        "cpu-ddp.yaml", [str(recipe), "train.max_steps=1"], recipe.parent, driver=driver, FAIL_CHECK="1"
    )
    seconds = time.monotonic() - started
    (code0, text0), (code1, text1) = nodes
    assert code0 != 0 and code1 != 0
    assert _error_lines(text0) == [f"error: {STUB}"], text0[-3000:]
    assert _error_lines(text1) == [f"error: rank 0 failed: {STUB}"], text1[-3000:]
    assert "exitcode: 4" in " ".join(text1.split())  # AssetError's code, on the machine that did not fail
    assert seconds < 120, f"{seconds:.0f} s: a rank waited out the collective timeout"
    # Each log's last write is its node's last word: node 1 stopped within a minute of node 0's error.
    node0, node1 = (recipe.parent / f"node-{rank}.log" for rank in (0, 1))
    assert node1.stat().st_mtime - node0.stat().st_mtime < 60


def test_a_rank_waiting_too_long_for_the_data_fails_saying_so(recipe: Path) -> None:
    driver = write_driver(recipe.parent)
    started = time.monotonic()
    result = launch(
        "cpu-ddp.yaml",
        str(recipe),
        "train.data_wait_timeout=5",  # after launch()'s 120 s: the last override wins
        driver=driver,
        # The slow rank takes far longer than the wait, so a busy machine's start-up fits in between.
        env=environment(SLOW_PREPARE_S="90"),
    )
    seconds = time.monotonic() - started
    assert result.returncode != 0
    lines = _error_lines(result.stdout + result.stderr)
    assert lines == [
        "error: rank 1 waited over 5 s for the data (reading, hygiene, tokenizing), prepared once per machine "
        "by its first rank; if that is only slow, raise train.data_wait_timeout (seconds)"
    ], errors(result)
    assert seconds < 80, "the waiting rank did not give up before the slow rank finished"


def test_a_data_error_stops_every_rank_and_finetune_launch_exits_with_its_code(recipe: Path) -> None:
    """`pipeline finetune RECIPE --launch cpu-ddp.yaml` with a broken record: the first rank of the machine
    finds it, the other rank stops with the same error, and the command exits with the data error's code."""
    import re
    import subprocess
    import sys

    from launched import ROOT, TIMEOUT_OVERRIDES

    broken = recipe.parent / "broken.jsonl"
    good = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}'
    broken.write_text(f"{good}\nnot json\n", encoding="utf-8")
    command = [sys.executable, "-m", "pipeline", "finetune", str(recipe), *TIMEOUT_OVERRIDES]
    command += [f"data.train={broken}", "--launch", "recipes/accelerate/cpu-ddp.yaml"]
    result = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, errors(result)  # DataError's exit code, through the launcher
    *ranks, launcher = _error_lines(result.stderr)
    data_error = f"{broken}:2: invalid JSON (Expecting value); each line must be one JSON object."
    assert ranks.count(f"error: {data_error}") == 1, errors(result)
    assert set(ranks) <= {f"error: {data_error}", f"error: rank 0 failed: {data_error}"}, errors(result)
    assert re.fullmatch(
        r"error: accelerate launch .*: rank [01] stopped with exit code 3 \(its error is above\)", launcher
    )
    assert "Traceback" not in result.stderr and " -> " not in result.stderr  # no run folder was opened
