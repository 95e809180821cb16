"""eval.judge against small local judges: both orders cancel a judge that always picks the first answer, a
judge that prefers one answer's content gives a win rate of 1 or 0, and an unreachable one is an error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from pipeline.config.training import EvalSpec, JudgeSpec
from pipeline.evaluation.judge import judge_answers, verdict


@pytest.fixture
def judge_server() -> Iterator[tuple[str, list[dict[str, Any]], list[Any]]]:
    """An OpenAI-style /chat/completions whose reply `decide(prompt)` computes; requests are recorded."""
    seen: list[dict[str, Any]] = []
    decide: list[Any] = [lambda text: "A"]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            reply = {
                "choices": [
                    {"message": {"role": "assistant", "content": decide[0](body["messages"][-1]["content"])}}
                ]
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen, decide
    finally:
        server.shutdown()


QUESTIONS, BASE, ADAPTED = ["q1", "q2", "q3", "q4"], ["meh"] * 4, ["great answer"] * 4


def test_position_bias_cancels(judge_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen, _decide = judge_server  # always "A"
    monkeypatch.setenv("JUDGE_KEY", "secret-key")
    out = judge_answers(JudgeSpec(endpoint=url, model="j", api_key_env="JUDGE_KEY"), QUESTIONS, BASE, ADAPTED)
    assert out["win_rate"] == 0.5 and out["n"] == 4 and out["consistent_rate"] == 0.0
    assert len(seen) == 8 and seen[0]["path"] == "/v1/chat/completions" and seen[0]["body"]["model"] == "j"
    assert seen[0]["auth"] == "Bearer secret-key" and "secret-key" not in json.dumps(out)
    # the two orders of one prompt show the answers swapped
    assert seen[0]["body"]["messages"][-1]["content"].index("meh") < seen[0]["body"]["messages"][-1][
        "content"
    ].index("great")
    assert seen[1]["body"]["messages"][-1]["content"].index("great") < seen[1]["body"]["messages"][-1][
        "content"
    ].index("meh")


def test_content_preference_gives_a_clear_win_rate(judge_server: Any) -> None:
    url, _seen, decide = judge_server

    def prefers_great(text: str) -> str:
        return "A" if text.index("Answer A") < text.find("great") < text.index("Answer B") else "B"

    decide[0] = prefers_great
    spec = JudgeSpec(endpoint=url, model="j")
    won = judge_answers(spec, QUESTIONS, BASE, ADAPTED)
    assert won["win_rate"] == 1.0 and won["consistent_rate"] == 1.0
    low, high = won["win_rate_ci95"]
    assert 0.4 < low < 0.6 and high == 1.0  # 4 prompts: a wide Wilson interval
    assert judge_answers(spec, QUESTIONS, ADAPTED, BASE)["win_rate"] == 0.0


def test_unreachable_judge_is_recorded_not_raised() -> None:
    out = judge_answers(
        JudgeSpec(endpoint="http://127.0.0.1:9/v1", model="j", timeout=2), ["q"], ["a"], ["b"]
    )
    assert "error" in out and "127.0.0.1:9" in out["error"]


def test_verdict_parsing_and_schema() -> None:
    assert [verdict(t) for t in ("B", "a.", "Tie", "I think B is better", "neither")] == [
        "B",
        "A",
        "tie",
        "B",
        "none",
    ]
    assert EvalSpec().judge is None
    with pytest.raises(ValueError, match="http"):
        JudgeSpec(endpoint="127.0.0.1:8000", model="j")
