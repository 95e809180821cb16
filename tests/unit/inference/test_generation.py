"""Decoding: greedy limits of sampling, seeds, stop strings, streaming, cancellation and assisted decoding."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CONVERSATIONS, build_tiny_model
from wordy_model import make_wordy

from pipeline.errors import PipelineError
from pipeline.inference.generation import Sampling, generate, generate_text, render_prompts
from pipeline.inference.stream import TokenStream

PROMPTS = [c[:1] for c in CONVERSATIONS]


def _texts(model: Any, tokenizer: Any, sampling: Sampling) -> list[str]:
    return generate(model, tokenizer, PROMPTS[:3], sampling, batch_size=2).texts


def test_near_zero_temperature_and_top_k_1_equal_greedy(tiny_model: Any, tiny_tokenizer: Any) -> None:
    greedy = _texts(tiny_model, tiny_tokenizer, Sampling(max_new_tokens=12))
    cold = _texts(tiny_model, tiny_tokenizer, Sampling(max_new_tokens=12, temperature=1e-5, seed=1))
    top_1 = _texts(tiny_model, tiny_tokenizer, Sampling(max_new_tokens=12, temperature=1.5, top_k=1, seed=2))
    hot = _texts(tiny_model, tiny_tokenizer, Sampling(max_new_tokens=12, temperature=1.5, seed=3))
    assert all(greedy) and cold == greedy and top_1 == greedy
    assert hot != greedy  # sampling really samples, so the equalities above are not vacuous


def test_same_seed_same_sample_and_n_samples(tiny_model: Any, tiny_tokenizer: Any) -> None:
    def sample(seed: int, n: int = 1) -> Any:
        settings = Sampling(max_new_tokens=8, temperature=1.2, top_p=0.95, min_p=0.01, seed=seed, n=n)
        return generate(tiny_model, tiny_tokenizer, PROMPTS[:2], settings)

    assert sample(7).texts == sample(7).texts
    assert sample(7).texts != sample(8).texts
    many = sample(7, n=3)
    assert [len(c) for c in many.completions] == [3, 3]
    assert len({c.text for c in many.completions[0]}) > 1
    assert many.texts == [c[0].text for c in many.completions]
    assert many.new_tokens == sum(c.tokens for samples in many.completions for c in samples)


def test_stop_strings_stop_generation(tiny_model: Any, tiny_tokenizer: Any) -> None:
    free = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], Sampling(max_new_tokens=24)).completions[0][0]
    assert free.finish_reason == "length" and free.tokens == 24
    stop = free.text[6:8]
    settings = Sampling(max_new_tokens=24, stop=(stop,))
    stopped = generate(tiny_model, tiny_tokenizer, PROMPTS[:1], settings).completions[0][0]
    assert stopped.text == free.text[: free.text.find(stop)].strip()
    assert stop not in stopped.text
    assert stopped.finish_reason == "stop" and stopped.tokens < 24  # decoding ended, not just the text


def test_stream_matches_batch_generation_and_cuts_stop(tiny_model: Any, tiny_tokenizer: Any) -> None:
    make_wordy(tiny_model, tiny_tokenizer)  # words with spaces: the streamer hands out text word by word
    prompt = render_prompts(tiny_tokenizer, PROMPTS[:1])[0]
    batch = generate_text(tiny_model, tiny_tokenizer, [prompt], Sampling(max_new_tokens=16)).completions[0][0]
    stream = TokenStream(tiny_model, tiny_tokenizer, prompt, Sampling(max_new_tokens=16))
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == batch.text
    assert (stream.finish_reason, stream.tokens) == ("length", 16) and stream.prompt_tokens > 0
    # The text ends only after the generation thread has: exiting with it still unwinding aborted `chat`.
    assert stream._thread is not None and not stream._thread.is_alive()
    assert "".join(pieces[:2]) in batch.text and len(pieces[0]) < len(batch.text)
    stop = batch.text.split()[2]
    cut = TokenStream(tiny_model, tiny_tokenizer, prompt, Sampling(max_new_tokens=16, stop=(stop,))).text()
    assert cut == batch.text[: batch.text.find(stop)]


def test_cancel_stops_a_stream_early(tiny_model: Any, tiny_tokenizer: Any) -> None:
    prompt = render_prompts(tiny_tokenizer, PROMPTS[:1])[0]
    with TokenStream(tiny_model, tiny_tokenizer, prompt, Sampling(max_new_tokens=400)) as stream:
        pieces = iter(stream)
        next(pieces)
        stream.cancel()
        rest = list(pieces)
    assert stream.finish_reason == "cancelled" and stream.tokens < 400
    assert stream._thread is not None and not stream._thread.is_alive()
    assert len(rest) < 100


def _assistant(vocab_size: int) -> Any:
    """A much smaller draft model (1 layer, hidden size 16) for assisted decoding."""
    return build_tiny_model(vocab_size, seed=5, hidden_size=16, layers=1)


def test_assisted_decoding_equals_greedy(tiny_model: Any, tiny_tokenizer: Any) -> None:
    assistant = _assistant(len(tiny_tokenizer))
    assert assistant.num_parameters() < tiny_model.num_parameters() / 2
    calls = []
    assistant.register_forward_hook(lambda *args: calls.append(1))
    settings = Sampling(max_new_tokens=12)
    plain = generate(tiny_model, tiny_tokenizer, PROMPTS[:2], settings)
    assisted = generate(tiny_model, tiny_tokenizer, PROMPTS[:2], settings, assistant_model=assistant)
    assert assisted.texts == plain.texts and assisted.new_tokens == plain.new_tokens
    assert calls and assisted.tokens_per_second > 0  # the assistant drafted tokens; speed is measured
    with pytest.raises(PipelineError, match="one sample per prompt"):
        generate(tiny_model, tiny_tokenizer, PROMPTS, Sampling(n=2, temperature=1), assistant_model=assistant)


def test_bad_sampling_values_name_the_field() -> None:
    with pytest.raises(PipelineError, match=r"top_p must be in \(0, 1\] \(got 0\)"):
        Sampling(top_p=0)
    with pytest.raises(PipelineError, match="temperature"):
        Sampling(temperature=-1)
