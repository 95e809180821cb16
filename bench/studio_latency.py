"""How fast the studio answers: start-up, the ledger of 200 run folders, and every page while a run trains.

Starts `pipeline studio` as a child process over a folder of 200 synthetic run folders (the shipped first-format
run folder with a recipe change and an events.jsonl each, as tests/studio_runs.py writes them), times the first
answer, the ledger cold (nothing cached) and warm, then every page idle and again while the studio trains
lora-small (the packaged SmolLM2) on the same cores. Prints medians and maxima in ms side by side.

    .venv/bin/python bench/studio_latency.py [--runs 200] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from live_server import free_port  # noqa: E402
from studio_runs import write_run  # noqa: E402

TRAINING = ["train.max_steps=400", "eval.enabled=false", "eval.base=false"]


def pages(first: str, second: str) -> list[str]:
    """Every page of the studio (and the ledger's JSON)."""
    return [
        "/runs",
        "/api/runs",
        "/recipes",
        "/recipes/edit?recipe=lora-small",
        "/train",
        "/data?recipe=lora-small",
        "/chat",
        f"/runs/{first}",
        f"/runs/{first}/preference",
        f"/runs/{first}/ship",
        f"/compare?run={first}&run={second}",
    ]


def timed(client: httpx.Client, url: str) -> float:
    """Milliseconds until the whole answer of url arrived (status 200 checked)."""
    start = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:200]}"
    return elapsed


def sweep(client: httpx.Client, urls: list[str], rounds: int) -> dict[str, list[float]]:
    """Each url timed `rounds` times, interleaved."""
    times: dict[str, list[float]] = {url: [] for url in urls}
    for _ in range(rounds):
        for url in urls:
            times[url].append(timed(client, url))
    return times


def cpu_name() -> str:
    """The CPU's model name (lscpu), for the figures' record."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")
        )
    except (OSError, StopIteration, subprocess.CalledProcessError):
        return platform.processor() or "unknown"


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="Synthetic run folders in the ledger.")
    parser.add_argument("--rounds", type=int, default=15, help="Requests per page in each phase.")
    args = parser.parse_args()
    runs = Path(tempfile.mkdtemp(prefix="studio-bench-")) / "runs"
    names = []
    for i in range(args.runs):
        name = f"lora-small-20261201-{i:06d}"
        write_run(runs, name, [2.0 - k * 0.01 for k in range(50)], {"adapter": {"r": 8 + i % 3 * 8}})
        names.append(name)
    from pipeline.studio.runs_index import RunsIndex

    clock = time.perf_counter()
    RunsIndex(runs).summaries()  # every folder read and summarised, nothing cached: what the warm-up costs
    read_all = (time.perf_counter() - clock) * 1000
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "studio", "--port", str(port), "--runs", str(runs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    client = httpx.Client(base_url=url, timeout=60)
    while True:
        try:
            client.get("/login")
            break
        except httpx.HTTPError:
            time.sleep(0.02)
    up = time.perf_counter() - started
    try:
        cold = timed(client, "/runs")
        urls = pages(names[0], names[1])
        idle = sweep(client, urls, args.rounds)
        job = client.post("/api/train", json={"recipe": "lora-small", "overrides": TRAINING}).json()
        while True:  # measure only once the optimizer steps run
            current = client.get(f"/api/jobs/{job['id']}").json()
            assert current["state"] == "running", current["tail"]
            events = runs / (current["run"] or "-") / "events.jsonl"
            if events.is_file() and '"kind":"step"' in events.read_text(encoding="utf-8"):
                break
            time.sleep(0.5)
        busy = sweep(client, urls, args.rounds)
        still = client.get(f"/api/jobs/{job['id']}").json()["state"]
        client.post(f"/api/jobs/{job['id']}/stop")
        while client.get(f"/api/jobs/{job['id']}").json()["state"] == "running":
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(60)
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; {args.runs} run folders; {args.rounds} requests per page"
    )
    print(f"studio up (first answer): {up:.2f} s; first ledger request after that: {cold:.0f} ms")
    print(
        f"reading all {args.runs} run folders with nothing cached (the start-up warm-up): {read_all:.0f} ms"
    )
    print(f"training during the whole second phase: {still == 'running'}")
    print("| page | idle median ms | idle max ms | training median ms | training max ms |")
    print("|---|---|---|---|---|")
    for page in urls:
        a, b = idle[page], busy[page]
        print(
            f"| `{page.replace(names[0], 'RUN').replace(names[1], 'RUN2')}` | {statistics.median(a):.1f} | "
            f"{max(a):.1f} | {statistics.median(b):.1f} | {max(b):.1f} |"
        )


if __name__ == "__main__":
    main()
