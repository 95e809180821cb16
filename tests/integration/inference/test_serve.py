"""A real uvicorn server on 127.0.0.1 with a tiny model and two adapters, called by the openai client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from live_server import live_server
from wordy_model import save_wordy_model

from pipeline.inference.engine import Engine, build_engine
from pipeline.inference.generation import Sampling, generate, generate_text
from pipeline.inference.schema import ChatCompletionRequest
from pipeline.inference.server import create_app
from pipeline.models.artifacts import load_target

KEY = "sk-test-key"
USER = [{"role": "user", "content": "What does json.dumps do?"}]
CONTEXT = 128  # tokens: small, so that "too many tokens" is easy to reach
MAX_BODY = 20_000  # bytes
PROMPT = "The quick brown"
Served = tuple[str, Engine]


def _adapter(base_dir: Path, folder: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # Random (not zero) LoRA weights so each adapter changes the answers; lm_head stays wordy.
    modules = ["q_proj", "v_proj", "o_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=64, target_modules=modules, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("serve")
    base = save_wordy_model(root / "wordy-base", tiny_model_dir)
    first, second = _adapter(base, root / "tuned", 1), _adapter(base, root / "other", 2)
    engine = build_engine(load_target(str(first)), "tuned", {"other": str(second)}, CONTEXT, 8)
    with live_server(create_app(engine, api_key=KEY, max_body_bytes=MAX_BODY)) as url:
        yield url, engine


@pytest.fixture(scope="module")
def client(server: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0], api_key=KEY, max_retries=0, timeout=60)


def _expected(engine: Engine, name: str, tokens: int = 6) -> Any:
    with engine.lock, engine.use(name):
        result = generate(engine.model, engine.tokenizer, [USER], Sampling(max_new_tokens=tokens))
    return result.completions[0][0]


def test_plain_model_without_adapters(tiny_model_dir: Path) -> None:
    engine = build_engine(load_target(str(tiny_model_dir)), "plain", {}, CONTEXT)
    assert engine.names == {"plain": None}
    request = ChatCompletionRequest(model="plain", messages=USER, max_tokens=3, temperature=0)
    prompt = engine.chat_prompt(USER)
    result = engine.complete(
        "plain", [prompt], engine.sampling(request, engine.count_tokens(prompt)), raw=False
    )
    assert result.completions[0][0].tokens == 3 and result.prompt_tokens == [engine.count_tokens(prompt)]


def test_models_lists_target_base_and_adapters(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["other", "tuned", "wordy-base"]


def test_chat_completion_uses_the_adapter_named_by_model(client: openai.OpenAI, server: Served) -> None:
    answers = {}
    for name in ("tuned", "other", "wordy-base"):
        reply = client.chat.completions.create(model=name, messages=USER, max_tokens=6, temperature=0)
        expected = _expected(server[1], name)
        assert reply.choices[0].message.content == expected.text and expected.text
        assert reply.choices[0].finish_reason == "length" and reply.model == name
        assert reply.usage.completion_tokens == 6 and reply.usage.prompt_tokens > 5
        answers[name] = expected.text
    assert len(set(answers.values())) == 3  # each adapter (and the bare base) answers differently


def test_streamed_chat_equals_the_plain_answer(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="tuned", messages=USER, max_tokens=6, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tuned",
            messages=USER,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces).strip() == plain.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 6


def test_completion_continues_the_raw_prompt(client: openai.OpenAI, server: Served) -> None:
    engine = server[1]
    reply = client.completions.create(model="tuned", prompt=PROMPT, max_tokens=5, temperature=0)
    with engine.lock, engine.use("tuned"):
        expected = generate_text(
            engine.model, engine.tokenizer, [PROMPT], Sampling(max_new_tokens=5), add_special_tokens=True
        )
    assert reply.choices[0].text == expected.texts[0] and reply.usage.completion_tokens == 5
    stop = expected.texts[0].split()[1]
    cut = client.completions.create(model="tuned", prompt=PROMPT, max_tokens=5, temperature=0, stop=[stop])
    assert cut.choices[0].text == expected.texts[0][: expected.texts[0].find(stop)]
    assert cut.choices[0].finish_reason == "stop"
    samples = client.completions.create(
        model="other", prompt=["Hi", PROMPT], max_tokens=4, n=2, seed=3, temperature=1.0
    )
    assert [c.index for c in samples.choices] == [0, 1, 2, 3] and samples.usage.completion_tokens == 16


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    assert "Traceback" not in exc.response.text
    return exc.response.json()["error"]


def test_each_bad_request_gets_an_openai_error(client: openai.OpenAI, server: Served) -> None:
    url = server[0]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    assert _error(info.value)["code"] == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=USER, max_tokens=2)
    assert _error(info.value)["code"] == "model_not_found" and "tuned" in _error(info.value)["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tuned", messages=USER, max_tokens=CONTEXT)
    assert _error(info.value)["code"] == "context_length_exceeded"
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="tuned", messages=[{"role": "user", "content": "x" * MAX_BODY}])
    assert info.value.status_code == 413 and "larger than" in _error(info.value)["message"]
    chunked = httpx.post(f"{url}/completions", content=iter([b"{" + b" " * MAX_BODY, b"}"]), headers=headers)
    assert chunked.status_code == 413 and "larger than" in chunked.json()["error"]["message"]
    for bad, field in (
        ({"temperature": -1}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"n": 0}, "n"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
    ):
        with pytest.raises(openai.UnprocessableEntityError) as info:
            client.chat.completions.create(model="tuned", messages=USER, max_tokens=2, **bad)
        assert _error(info.value)["param"] == field
    broken = b'{"model": "tuned", "messages": ['
    malformed = httpx.post(f"{url}/chat/completions", content=broken, headers=headers)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_json"
    missing = httpx.post(f"{url}/chat/completions", content=json.dumps({"model": "tuned"}), headers=headers)
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "messages"
    unauthenticated = httpx.get(f"{url}/models")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["type"] == "authentication_error"


def test_concurrent_requests_are_queued_and_all_answered(client: openai.OpenAI, server: Served) -> None:
    names = ["tuned", "other", "wordy-base", "tuned"]
    results: dict[int, str] = {}

    def ask(index: int) -> None:
        reply = client.chat.completions.create(model=names[index], messages=USER, max_tokens=6, temperature=0)
        results[index] = reply.choices[0].message.content

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {i: _expected(server[1], name).text for i, name in enumerate(names)}


def test_client_disconnect_mid_stream_frees_the_model(client: openai.OpenAI, server: Served) -> None:
    url, engine = server
    # Slow each decoding step (20 ms) so the stream is surely still running when the client leaves.
    hook = engine.model.get_output_embeddings().register_forward_hook(lambda *args: time.sleep(0.02))
    body = {"model": "tuned", "messages": USER, "max_tokens": 100, "temperature": 0, "stream": True}
    try:
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=auth, timeout=30) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data:"))
        stream = engine.streams[-1]
        deadline = time.monotonic() + 10
        while stream.running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not stream.running and stream.tokens < 100 and not engine.lock.locked()
    finally:
        hook.remove()
    reply = client.chat.completions.create(model="tuned", messages=USER, max_tokens=6, temperature=0)
    assert reply.choices[0].message.content == _expected(engine, "tuned").text
