"""The chat child process's protocol, run in this process on the tiny model: ready, pieces, done; errors as lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pipeline.studio.chat_worker import main


def _lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_answers_stream_as_pieces_then_done(tiny_model_dir: Path) -> None:
    request = {"messages": [{"role": "user", "content": "hello there"}], "sampling": {"max_new_tokens": 8}}
    bad = {"messages": [{"role": "user", "content": "x"}], "sampling": {"max_new_tokens": 0}}
    stdin = io.StringIO(json.dumps(request) + "\n" + json.dumps(bad) + "\n" + json.dumps(request) + "\n")
    out = io.StringIO()
    assert main([str(tiny_model_dir)], stdin, out) == 0
    messages = _lines(out)
    assert messages[0] == {"ready": True, "target": str(tiny_model_dir)}
    first_done = next(i for i, m in enumerate(messages) if "done" in m)
    pieces = [m["piece"] for m in messages[1:first_done]]
    assert pieces and messages[first_done]["tokens"] == 8 and messages[first_done]["finish"] == "length"
    error = messages[first_done + 1]
    assert error == {"error": "sampling: max_new_tokens must be >= 1 (got 0)."}
    second = messages[first_done + 2 :]
    assert "".join(m.get("piece", "") for m in second) == "".join(pieces)  # greedy: the same answer again


def test_a_target_that_does_not_load_is_one_error_line(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main([str(tmp_path / "missing")], io.StringIO(), out) == 1
    (message,) = _lines(out)
    assert set(message) == {"error"} and "\n" not in message["error"]
