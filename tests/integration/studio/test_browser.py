"""The studio in a real browser (Debian's chromium driven by Playwright) against a live `pipeline studio`:
recipes listed, the CLI's error on a bad value, a tiny-model run started, watched live and finished, stopped and
resumed, two runs compared, a chat streamed, and the key enforced off loopback.

Chromium comes from `make browser-env` (apt). .ci/run sets PIPELINE_REQUIRE_BROWSER=1, so there a missing
browser fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_chat_files, write_tiny_recipe
from live_server import free_port
from studio_runs import write_run

from pipeline.config.loader import list_recipe_files, load_recipe
from pipeline.errors import RecipeError
from pipeline.runs.record import RunRecord

CHROMIUM = Path(os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium"))
REQUIRED = os.environ.get("PIPELINE_REQUIRE_BROWSER") == "1"  # .ci/run: a missing browser fails, never skips
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file() and not REQUIRED,
        reason=f"no {CHROMIUM}: `make browser-env` installs Debian's chromium (.ci/run does, and sets "
        "PIPELINE_REQUIRE_BROWSER=1 so that CI cannot skip these tests)",
    ),
]
RUN_TIMEOUT = 300_000  # ms: a tiny run in a child process (imports, evaluations, training) on a busy machine


def start_studio(
    runs: Path, host: str = "127.0.0.1", env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`pipeline studio` in a child process; its URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "studio",
            "--host",
            host,
            "--port",
            str(port),
            "--runs",
            str(runs),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"{url}/login", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"the studio did not start: {process.communicate()[0]}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("studio")
    files = write_chat_files(root / "data")
    recipes = {}
    for name, steps in (("live", 300), ("stoppable", 800), ("chatted", 20)):
        train = {"max_steps": steps, "save_steps": 10_000}  # a stop saves its own checkpoint
        recipes[name] = write_tiny_recipe(
            root / f"{name}.yaml", tiny_model_dir, files, root / "runs", train=train
        )
    return {"root": root, "runs": root / "runs", "recipes": recipes, "model": tiny_model_dir}


@pytest.fixture(scope="module")
def studio(workspace: dict[str, Any]) -> Iterator[str]:
    env = {"PIPELINE_BASE_CACHE": str(workspace["root"] / "base-cache"), "HF_HUB_OFFLINE": "1"}
    process, url = start_studio(workspace["runs"], env=env)
    yield url
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def cli_run(workspace: dict[str, Any]) -> str:
    """A run trained from the terminal (`pipeline finetune`), not by the studio: the studio must show it."""
    env = {**os.environ, "PIPELINE_BASE_CACHE": str(workspace["root"] / "base-cache"), "HF_HUB_OFFLINE": "1"}
    subprocess.run(
        [sys.executable, "-m", "pipeline", "finetune", str(workspace["recipes"]["chatted"])],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    return next(p.name for p in workspace["runs"].iterdir() if p.name.startswith("chatted-"))


def _wait_for_run(url: str, label: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for job in httpx.get(f"{url}/api/jobs").json():
            if job["label"] == label and job["run"]:
                return str(job["run"])
            if job["label"] == label and job["state"] == "failed":
                raise AssertionError(job["tail"])
        time.sleep(0.2)
    raise AssertionError(f"{label}: no run folder appeared")


def test_shipped_recipes_are_listed(studio: str, page: Any) -> None:
    page.goto(f"{studio}/recipes")
    listed = page.locator("#recipes tbody tr").evaluate_all("rows => rows.map(r => r.dataset.recipe)")
    assert sorted(Path(name).name for name in listed) == sorted(p.stem for p in list_recipe_files())


def test_an_invalid_value_shows_the_clis_error(studio: str, page: Any) -> None:
    with pytest.raises(RecipeError) as expected:
        load_recipe("lora-small", ["train.learning_rate=-1"])
    page.goto(f"{studio}/recipes/edit?recipe=lora-small")
    page.locator("#status.ok").wait_for()
    page.fill('[data-key="train.learning_rate"]', "-1")
    error = page.locator("#errors li").first
    error.wait_for()
    assert error.inner_text() == str(expected.value)
    assert page.locator("#start").is_disabled()
    assert "train.learning_rate=-1" in page.locator("#command").inner_text()


def test_a_run_starts_updates_live_and_finishes(studio: str, page: Any, workspace: dict[str, Any]) -> None:
    page.goto(f"{studio}/recipes/edit?recipe={workspace['recipes']['live']}")
    page.locator("#status.ok").wait_for()
    page.click("#start")
    page.wait_for_url(f"{studio}/train")
    name = _wait_for_run(studio, "finetune live")
    page.locator(f'a[href="/runs/{name}"]').click()
    page.evaluate(
        """() => { window.seen = []; new MutationObserver(() => window.seen.push(
             [performance.now(), document.querySelector('#s-step').textContent])
           ).observe(document.querySelector('#s-step'), {childList: true, characterData: true, subtree: true}); }"""
    )
    page.locator("#state.finished").wait_for(timeout=RUN_TIMEOUT)
    seen = page.evaluate("window.seen")
    steps = [int(text.split(" / ")[0]) for _, text in seen if " / " in text]
    assert steps[-1] == 300 and page.locator("#s-step").inner_text() == "300 / 300"
    assert len(set(steps)) >= 3 and steps == sorted(steps)
    # Live: the steps arrived over time while the page was open, not in one load.
    assert seen[-1][0] - seen[0][0] > 300
    assert page.locator("#s-loss").inner_text() != "–"


def test_a_run_is_stopped_and_resumed(studio: str, page: Any, workspace: dict[str, Any]) -> None:
    job = httpx.post(f"{studio}/api/train", json={"recipe": str(workspace["recipes"]["stoppable"])}).json()
    assert job["state"] in ("running", "queued")
    name = _wait_for_run(studio, "finetune stoppable")
    page.goto(f"{studio}/runs/{name}")
    page.locator("#s-step", has_text=" / 800").wait_for(timeout=RUN_TIMEOUT)
    page.click("#stop")
    page.locator("#state.stopped").wait_for(timeout=RUN_TIMEOUT)
    stopped_at = RunRecord.load(workspace["runs"] / name).events[-1]
    assert stopped_at.kind == "stopped" and 0 < stopped_at.step < 800
    assert (workspace["runs"] / name / "checkpoints").is_dir()
    page.click("#resume")
    page.locator("#state.finished").wait_for(timeout=RUN_TIMEOUT)
    record = RunRecord.load(workspace["runs"] / name)
    starts = [e.step for e in record.events if e.kind == "started"]
    assert starts == [0, stopped_at.step] and record.state == "finished"


def test_two_runs_are_compared(studio: str, page: Any, workspace: dict[str, Any]) -> None:
    write_run(workspace["runs"], "cmp-a-20261201-000000", [3.0, 2.0, 1.5])
    write_run(workspace["runs"], "cmp-b-20261201-000001", [3.1, 1.8, 1.1], {"adapter": {"r": 4}})
    page.goto(f"{studio}/runs")
    page.fill("#filter", "cmp-")
    page.check('.pick[value="cmp-a-20261201-000000"]')
    page.check('.pick[value="cmp-b-20261201-000001"]')
    page.click("#compare")
    page.wait_for_url("**/compare?**")
    legend = page.locator("#chart-compare .u-legend .u-series").all_inner_texts()
    assert any("cmp-a-20261201-000000" in t for t in legend) and any(
        "cmp-b-20261201-000001" in t for t in legend
    )
    assert page.locator("#chart-compare canvas").count() == 1
    row = page.locator("#differences tr", has_text="adapter.r").inner_text().split("\t")
    assert row[0] == "adapter.r" and sorted(row[1:]) == ["16", "4"]


def test_chat_streams_an_answer(studio: str, page: Any, cli_run: str, workspace: dict[str, Any]) -> None:
    page.goto(f"{studio}/runs")
    assert page.locator(f'tr[data-run="{cli_run}"]').get_attribute("data-state") == "finished"
    page.goto(f"{studio}/chat")
    assert page.locator("#target-right").input_value() == f"run:{cli_run}"
    assert page.locator("#target-left").input_value() == f"base:{workspace['model']}"
    page.fill("#prompt", "Hello there, how are you?")
    page.fill("#max-new-tokens", "12")
    page.click("#send")
    for side in ("left", "right"):
        page.locator(f"#stats-{side}", has_text="tokens/s").wait_for(timeout=120_000)
        assert page.locator(f"#answer-{side}").inner_text().strip()
    query = {"target": f"run:{cli_run}", "prompt": "Hello there", "max_new_tokens": "12"}
    with httpx.stream("GET", f"{studio}/api/chat/stream", params=query, timeout=60) as response:
        messages = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert len([m for m in messages if "piece" in m]) > 1 and messages[-1]["done"] is True


def test_the_key_is_enforced_off_loopback(workspace: dict[str, Any], page: Any) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline", "studio", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PIPELINE_STUDIO_KEY"},
    )
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "error: studio: --host 0.0.0.0 is reachable from other machines; set PIPELINE_STUDIO_KEY to a secret "
        "key (every request must then carry it), or keep the default --host 127.0.0.1."
    ]
    process, url = start_studio(workspace["runs"], "0.0.0.0", {"PIPELINE_STUDIO_KEY": "correct horse"})
    try:
        assert httpx.get(f"{url}/api/runs").status_code == 401
        page.goto(f"{url}/runs")
        assert "/login" in page.url
        page.fill('input[name="key"]', "wrong")
        page.click('button[type="submit"]')
        page.locator("#login-error").wait_for()
        page.fill('input[name="key"]', "correct horse")
        page.click('button[type="submit"]')
        page.locator("#ledger").wait_for()
        assert page.url.endswith("/runs")
    finally:
        process.terminate()
        process.wait(30)
