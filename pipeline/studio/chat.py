"""Chat models for the studio, each in its own child process (pipeline.studio.chat_worker), kept warm.

At most MAX_WORKERS models stay loaded (the least recently used one is closed first); each answers one request
at a time, so two models side by side generate in parallel while the server's threads only relay lines.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from pipeline.errors import PipelineError

MAX_WORKERS = 2
LOAD_TIMEOUT = 300.0  # seconds: a 135M model from its safetensors loads in a few; a GGUF base ~25


class ChatWorker:
    """One loaded model in a child process, answering requests line by line."""

    def __init__(self, target: str, env: dict[str, str] | None = None) -> None:
        self.target = target
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.studio.chat_worker", target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
        )
        self.lock = threading.Lock()
        self.ready: bool | None = None  # None: still loading
        self.error: str | None = None

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise PipelineError(f"chat model {self.target}: its process ended (exit {self.process.poll()}).")
        return json.loads(line)

    def _wait_ready(self) -> None:
        if self.ready is None:
            message = self._read()
            self.ready = "ready" in message
            self.error = message.get("error")
        if not self.ready:
            raise PipelineError(self.error or f"chat model {self.target} did not load.")

    def ask(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Stream one answer: {"piece": ...} messages, then {"done": ...} (or {"error": ...}).

        A pump thread reads the whole answer off the pipe whether or not the caller keeps reading (a closed
        browser tab), so the next request never sees the end of this one."""
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._pump, args=(messages, sampling, answers), daemon=True).start()
        while True:
            message = answers.get()
            yield message
            if "done" in message or "error" in message:
                return

    def _pump(self, messages: list[dict[str, str]], sampling: dict[str, Any], out: queue.Queue[Any]) -> None:
        with self.lock:
            try:
                self._wait_ready()
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps({"messages": messages, "sampling": sampling}) + "\n")
                self.process.stdin.flush()
                while True:
                    message = self._read()
                    out.put(message)
                    if "done" in message or "error" in message:
                        return
            except (PipelineError, OSError, ValueError) as exc:
                out.put({"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})

    def close(self) -> None:
        """End the child process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class ChatPool:
    """Loaded chat models by target (run folder, adapter, merged or base model)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.workers: OrderedDict[str, ChatWorker] = OrderedDict()
        self._lock = threading.Lock()

    def worker(self, target: str) -> ChatWorker:
        """The worker for target, started (and the least recently used one closed) when needed."""
        with self._lock:
            worker = self.workers.get(target)
            if worker is not None and worker.process.poll() is None:
                self.workers.move_to_end(target)
                return worker
            while len(self.workers) >= MAX_WORKERS:
                _, old = self.workers.popitem(last=False)
                old.close()
            worker = self.workers[target] = ChatWorker(target, self.env)
            return worker

    def stream(
        self, target: str, messages: list[dict[str, str]], sampling: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """The answer of target's model as messages; a failure becomes one {"error": line} message."""
        started = time.perf_counter()
        try:
            yield from self.worker(target).ask(messages, sampling)
        except (PipelineError, ValueError) as exc:
            yield {"error": str(exc).splitlines()[0], "seconds": time.perf_counter() - started}

    def close(self) -> None:
        """End every chat process."""
        with self._lock:
            for worker in self.workers.values():
                worker.close()
            self.workers.clear()
