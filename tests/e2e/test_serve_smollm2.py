"""The real `pipeline serve` on the packaged SmolLM2-135M, called with the openai client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from live_server import free_port

ROOT = Path(__file__).resolve().parents[3]
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
def test_serve_smollm2_answers_openai_client() -> None:
    port = free_port()
    env = {**os.environ, "PIPELINE_API_KEY": "sk-e2e", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "serve", MODEL, "--port", str(port), "--device", "cpu"]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "the server did not come up within 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 401:
                    break  # up, and the key from PIPELINE_API_KEY is required
            except httpx.TransportError:
                time.sleep(0.5)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-e2e", max_retries=0, timeout=60
        )
        assert [m.id for m in client.models.list()] == [MODEL]
        question = [{"role": "user", "content": "What is the capital of France?"}]
        reply = client.chat.completions.create(model=MODEL, messages=question, max_tokens=24, temperature=0)
        assert "Paris" in reply.choices[0].message.content
        stream = client.chat.completions.create(
            model=MODEL, messages=question, max_tokens=24, temperature=0, stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text.strip() == reply.choices[0].message.content
        ended = client.chat.completions.create(model=MODEL, messages=question, max_tokens=200, temperature=0)
        assert ended.choices[0].finish_reason == "stop" and ended.usage.completion_tokens < 200  # EOS seen
    finally:
        server.terminate()
        server.wait(30)
