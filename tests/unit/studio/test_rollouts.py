"""GRPO's rollouts file: groups, flat groups and totals as written, read back newest first, shown by the studio."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from studio_runs import write_run

from pipeline.runs.rollouts import ROLLOUTS, append_round, group_rollouts, read_rollouts
from pipeline.studio.app import create_app

RUN = "grpo-small-20261201-000000"


def test_groups_follow_the_prompts_and_flat_groups_are_marked() -> None:
    prompts = ["a?", "a?", "b?", "b?"]
    rewards = {"exact_match": [1.0, 0.0, 0.0, 0.0], "length": [0.5, 0.5, 0.25, 0.25]}
    groups = group_rollouts(prompts, ["x", "y", "z", "w"], rewards, weights=[2.0, 1.0])
    assert [g["prompt"] for g in groups] == ["a?", "b?"]
    assert [c["total"] for c in groups[0]["completions"]] == [2.5, 0.5]
    assert [g["flat"] for g in groups] == [False, True]
    assert groups[0]["completions"][0]["rewards"] == {"exact_match": 1.0, "length": 0.5}


def test_rounds_read_back_newest_first_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    groups = group_rollouts(["p", "p"], ["x", "y"], {"r": [1.0, 0.0]}, [1.0])
    for step in (1, 2, 3):
        append_round(tmp_path, step, groups)
    with (tmp_path / ROLLOUTS).open("a", encoding="utf-8") as handle:
        handle.write('{"step": 4, "gro')  # a run still writing
    assert [r["step"] for r in read_rollouts(tmp_path, last=3)] == [3, 2]
    assert [r["step"] for r in read_rollouts(tmp_path)] == [3, 2, 1]
    assert read_rollouts(tmp_path / "none") == []


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    runs = tmp_path / "runs"
    write_run(runs, RUN, [0.5, 0.4], {"train": {"stage": "grpo"}})
    flat = group_rollouts(["same?", "same?"], ["a", "b"], {"exact_match": [0.0, 0.0]}, [1.0])
    varied = group_rollouts(["kind?", "kind?"], ["class", "x"], {"exact_match": [1.0, 0.0]}, [1.0])
    append_round(runs / RUN, 7, flat + varied)
    return TestClient(create_app(runs))


def test_the_rollouts_page_shows_groups_rewards_and_the_flat_share(client: TestClient) -> None:
    page = client.get(f"/runs/{RUN}/rollouts")
    assert page.status_code == 200, page.text
    assert "step 7" in page.text and "50%" in page.text
    assert "kind?" in page.text and "<td>class</td>" in page.text and "exact_match" in page.text
    assert page.text.count('class="rollout flat"') == 1
    assert f'/runs/{RUN}/rollouts"' in client.get(f"/runs/{RUN}").text


def test_a_run_without_rollouts_says_so(client: TestClient, tmp_path: Path) -> None:
    write_run(tmp_path / "runs", "lora-small-20261201-000000", [2.0])
    page = client.get("/runs/lora-small-20261201-000000/rollouts").text
    assert 'id="rollouts-empty"' in page
