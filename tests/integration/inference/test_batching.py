"""Dynamic batching in `pipeline serve`: waiting requests share one generation, with the answers they would
get alone; cancelled requests stop; a bounded load test over loopback loses nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import live_server
from wordy_model import save_wordy_model

from pipeline.inference.engine import Engine, build_engine
from pipeline.inference.generation import Sampling, generate_text
from pipeline.inference.server import create_app
from pipeline.models.artifacts import load_target

KEY = "sk-load"
# Prompts of different lengths, so that a batch really pads (on the left) the shorter ones.
QUESTIONS = [
    "What does json.dumps do?",
    "Hi",
    "Explain os.path.join in Python, and say which module it lives in.",
    "The quick brown fox",
    "Hello world, how are you today? Answer the question about the Python standard library briefly.",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Engine:
    base = save_wordy_model(tmp_path_factory.mktemp("batching") / "wordy", tiny_model_dir)
    return build_engine(load_target(str(base)), "wordy", {}, context_length=256, default_max_tokens=8)


@pytest.fixture
def slow_steps(engine: Engine) -> Iterator[None]:
    """Each decoding step sleeps 20 ms, so a generation is surely still running when it is cancelled."""
    hook = engine.model.get_output_embeddings().register_forward_hook(lambda *args: time.sleep(0.02))
    yield
    hook.remove()


def _alone(engine: Engine, prompt: str, tokens: int, raw: bool = False) -> Any:
    with engine.lock:
        result = generate_text(
            engine.model, engine.tokenizer, [prompt], Sampling(max_new_tokens=tokens), add_special_tokens=raw
        )
    return result.completions[0][0], result.prompt_tokens[0]


def test_waiting_requests_share_one_generation_with_their_lone_answers(engine: Engine) -> None:
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]
    limits = [12, 5, 9, 12, 3]  # each request keeps its own max_tokens inside the batch
    with engine.lock:  # the model is busy: all five queue up
        jobs = [
            engine.submit("wordy", [p], Sampling(max_new_tokens=n), False)
            for p, n in zip(prompts, limits, strict=True)
        ]
        time.sleep(0.2)
        assert engine.batcher.waiting == 5 and engine.load() == 5
    results = [job.future.result(60) for job in jobs]
    assert engine.batcher.batch_sizes[-1] == 5  # one generation for the five of them
    for prompt, limit, result in zip(prompts, limits, results, strict=True):
        alone, prompt_tokens = _alone(engine, prompt, limit)
        assert result.completions[0][0] == alone and alone.text  # same text, finish reason, token count
        assert result.prompt_tokens == [prompt_tokens]
    assert len({r.texts[0] for r in results}) > 2
    assert engine.load() == 0


def test_streams_join_the_batch_and_stream_their_lone_answers(engine: Engine) -> None:
    prompts = [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS[:4]]
    limits = [10, 4, 7, 10]
    with engine.lock:
        streams = [
            engine.stream("wordy", p, Sampling(max_new_tokens=n), False)
            for p, n in zip(prompts[:3], limits[:3], strict=True)
        ]
        plain = engine.submit("wordy", [prompts[3]], Sampling(max_new_tokens=limits[3]), False)
        time.sleep(0.2)
        assert engine.load() == 4 and all(s.running for s in streams)
    texts = [s.text() for s in streams]
    assert engine.batcher.batch_sizes[-1] == 4  # three streams and a plain request in one generation
    for stream, text, prompt, limit in zip(streams, texts, prompts, limits, strict=False):
        alone, prompt_tokens = _alone(engine, prompt, limit)
        assert text == alone.text and alone.text
        assert (stream.tokens, stream.finish_reason, stream.prompt_tokens) == (
            alone.tokens,
            alone.finish_reason,
            prompt_tokens,
        )
    assert plain.future.result(30).completions[0][0] == _alone(engine, prompts[3], limits[3])[0]
    assert engine.load() == 0


def test_a_cancelled_stream_ends_while_its_batch_goes_on(engine: Engine, slow_steps: None) -> None:
    prompt = engine.chat_prompt([{"role": "user", "content": QUESTIONS[0]}])
    with engine.lock:
        leaving = engine.stream("wordy", prompt, Sampling(max_new_tokens=60), False)
        staying = engine.submit("wordy", [prompt], Sampling(max_new_tokens=60), False)
    pieces = iter(leaving)
    next(pieces)
    leaving.cancel()
    rest = list(pieces)
    assert leaving.finish_reason == "cancelled" and leaving.tokens < 60 and len(rest) < 50
    assert not leaving.running and staying.future.result(60).new_tokens == 60  # the other row went on


def test_only_compatible_requests_are_batched(engine: Engine) -> None:
    prompt = engine.chat_prompt([{"role": "user", "content": QUESTIONS[0]}])
    seeded = Sampling(max_new_tokens=4, temperature=1.0, seed=5)
    with engine.lock:
        jobs = [
            engine.submit("wordy", [prompt], Sampling(max_new_tokens=4), False),
            engine.submit("wordy", [prompt], seeded, False),  # same seed, same sample: decoded alone
            engine.submit("wordy", [QUESTIONS[1]], Sampling(max_new_tokens=4), True),  # raw text differs
            engine.submit("wordy", [prompt], Sampling(max_new_tokens=6), False),  # joins the first
        ]
    results = [job.future.result(60) for job in jobs]
    assert list(engine.batcher.batch_sizes)[-3:] == [2, 1, 1]
    assert results[1].texts == engine.complete("wordy", [prompt], seeded, False).texts


def test_a_cancelled_request_is_dropped_or_stopped(engine: Engine, slow_steps: None) -> None:
    prompt = engine.chat_prompt([{"role": "user", "content": QUESTIONS[0]}])
    with engine.lock:
        queued = engine.submit("wordy", [prompt], Sampling(max_new_tokens=200), False)
        queued.cancel()
    with pytest.raises(CancelledError):
        queued.future.result(10)
    running = engine.submit("wordy", [prompt], Sampling(max_new_tokens=200), False)
    neighbour = engine.submit("wordy", [prompt], Sampling(max_new_tokens=200), False)
    time.sleep(0.5)
    start = time.monotonic()
    running.cancel()
    neighbour.cancel()
    tokens = running.future.result(30).new_tokens
    assert tokens < 100 and time.monotonic() - start < 2  # 200 tokens take >= 4 s at 20 ms a step
    assert engine.load() == 0 and not engine.lock.locked()


def _post(client: httpx.Client, index: int) -> tuple[int, str, bool]:
    """One request of the load test: chat or completion, streamed every third time."""
    streamed = index % 3 == 0
    question = QUESTIONS[index % len(QUESTIONS)]
    if index % 2:
        path, body = "/chat/completions", {"messages": [{"role": "user", "content": question}]}
    else:
        path, body = "/completions", {"prompt": question}
    body |= {"model": "wordy", "max_tokens": 6, "temperature": 0, "stream": streamed}
    if not streamed:
        response = client.post(path, json=body)
        if response.status_code != 200:
            return response.status_code, response.text, False
        choice = response.json()["choices"][0]
        return 200, choice.get("text") or choice.get("message", {}).get("content", ""), False
    text, finished = "", False
    with client.stream("POST", path, json=body) as response:
        for line in response.iter_lines():
            if line == "data: [DONE]":
                finished = True
            elif line.startswith("data: "):
                choice = json.loads(line[6:])["choices"][0]
                text += choice.get("text") or choice.get("delta", {}).get("content") or ""
        return response.status_code, text, finished


def test_load_200_requests_from_8_clients_lose_nothing(engine: Engine) -> None:
    expected = {}
    for index in range(len(QUESTIONS) * 2):
        question = QUESTIONS[index % len(QUESTIONS)]
        chat = index % 2 == 1
        prompt = engine.chat_prompt([{"role": "user", "content": question}]) if chat else question
        answer = _alone(engine, prompt, 6, raw=not chat)[0].text
        expected[index % 2, question] = answer.strip() if chat else answer
    before = len(engine.batcher.batch_sizes)
    with live_server(create_app(engine, api_key=KEY)) as url:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client, ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda i: _post(client, i), range(200)))
    statuses = [status for status, _, _ in outcomes]
    assert statuses == [200] * 200, [o for o in outcomes if o[0] != 200][:3]
    for index, (_, text, finished) in enumerate(outcomes):
        key = (index % 2, QUESTIONS[index % len(QUESTIONS)])
        assert text.strip() == expected[key].strip(), (index, text)
        assert finished or index % 3  # every stream ended with [DONE]
    sizes = list(engine.batcher.batch_sizes)[before:]
    assert max(sizes) > 1, sizes  # concurrent requests really shared generations
    assert engine.load() == 0


def test_a_client_gone_from_a_plain_request_frees_its_place(engine: Engine) -> None:
    body = {"model": "wordy", "prompt": QUESTIONS[0], "max_tokens": 50, "temperature": 0}
    with live_server(create_app(engine)) as url:
        with engine.lock:  # the model is busy, so the request waits in the queue
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{url}/completions", json=body, timeout=1.0)  # the client gives up
            deadline = time.monotonic() + 5
            while engine.load() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert engine.load() == 0 and engine.batcher.waiting <= 1  # cancelled while still queued
        reply = httpx.post(f"{url}/completions", json=body | {"max_tokens": 3}, timeout=30)
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3


def test_one_at_a_time_when_max_batch_is_1(tiny_model_dir: Path) -> None:
    engine = build_engine(load_target(str(tiny_model_dir)), "plain", {}, 256)
    engine = Engine(engine.model, engine.tokenizer, engine.names, 256, max_batch=1)
    prompt = engine.chat_prompt([{"role": "user", "content": QUESTIONS[0]}])
    with engine.lock:
        jobs = [engine.submit("plain", [prompt], Sampling(max_new_tokens=3), False) for _ in range(3)]
    assert {job.future.result(30).texts[0] for job in jobs} and list(engine.batcher.batch_sizes) == [1, 1, 1]
