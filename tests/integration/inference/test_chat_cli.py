"""`pipeline chat` driven through piped stdin: streamed answers, history, /reset, /system, trimming."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from wordy_model import save_wordy_model

from pipeline.data.formatting import render
from pipeline.inference.chat import run_chat
from pipeline.inference.generation import Sampling, generate

ROOT = Path(__file__).resolve().parents[3]
Q1, Q2, Q3 = "What does json.dumps do?", "What is the quick brown fox?", "Hello, how are you?"


@pytest.fixture(scope="module")
def wordy(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> tuple[Path, Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = save_wordy_model(tmp_path_factory.mktemp("wordy"), tiny_model_dir)
    return folder, AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


class Recorder(io.StringIO):
    """A stdout that remembers each write, to see that answers arrive in pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_piped_chat_keeps_history_and_resets(wordy: tuple[Path, Any, Any]) -> None:
    folder, model, tokenizer = wordy

    def answer(messages: list[dict[str, str]]) -> str:
        return generate(model, tokenizer, [messages], Sampling(max_new_tokens=6)).texts[0]

    script = f"{Q1}\n{Q2}\n/reset\n{Q2}\n/system Answer briefly.\n{Q3}\n/bogus\n/exit\nnot read\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "chat", str(folder), "--greedy", "-m", "6", "--device", "cpu"],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    a1 = answer([_user(Q1)])
    a2 = answer([_user(Q1), {"role": "assistant", "content": a1}, _user(Q2)])
    a3 = answer([_user(Q2)])  # after /reset the earlier turns are gone
    system = {"role": "system", "content": "Answer briefly."}
    a4 = answer([system, _user(Q2), {"role": "assistant", "content": a3}, _user(Q3)])
    assert done.stdout.splitlines() == [a1, a2, a3, a4]
    assert a2 != a3  # the history really changed the answer, so the reset is visible
    assert "[history cleared]" in done.stderr and "[system prompt set]" in done.stderr
    assert "unknown command /bogus" in done.stderr and "you>" not in done.stdout  # no prompt without a TTY


def test_answers_stream_and_history_fits_the_context(wordy: tuple[Path, Any, Any]) -> None:
    _, model, tokenizer = wordy
    stdout, notices = Recorder(), io.StringIO()
    turns = [Q1, Q2, Q3, Q1, Q2]
    session = run_chat(
        model,
        tokenizer,
        Sampling(max_new_tokens=8),
        system="Be brief.",
        context_length=72,
        stdin=io.StringIO("\n".join(turns) + "\n"),
        stdout=stdout,
        notices=notices,
        stats=True,
    )
    first_answer = stdout.writes[: stdout.writes.index("\n")]
    assert len(first_answer) > 1  # streamed piece by piece, not printed at once
    assert "dropped 2 old turns to fit 72 tokens" in notices.getvalue()
    last_prompt = render(tokenizer, session.messages()[:-1], add_generation_prompt=True)
    assert len(tokenizer(last_prompt, add_special_tokens=False)["input_ids"]) + 8 <= 72  # prompt + answer fit
    assert session.history[0]["role"] == "user" and len(session.history) < 2 * len(turns)
    assert session.history[-2] == _user(Q2) and session.messages()[0]["content"] == "Be brief."
    assert notices.getvalue().count("tokens/s]") == len(turns)
    too_long = run_chat(
        model,
        tokenizer,
        Sampling(max_new_tokens=8),
        context_length=24,
        stdin=io.StringIO(Q1 * 10 + "\n"),
        stdout=io.StringIO(),
        notices=notices,
    )
    assert too_long.history == [] and "does not fit the context (24 tokens" in notices.getvalue()
