"""Perplexity: batched/length-sorted values equal an independent one-example-at-a-time exp(sum NLL / N)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from conftest import CONVERSATIONS

from pipeline.data.formatting import tokenize_conversation, tokenize_text
from pipeline.evaluation.perplexity import Window, distribution, packed_rows, perplexity, plan_windows


def _rows(tokenizer: Any) -> list[dict[str, Any]]:
    return [tokenize_conversation(tokenizer, m, 10_000, "assistant") for m in CONVERSATIONS]


def _reference(model: Any, rows: list[dict[str, Any]]) -> tuple[float, float, list[float]]:
    """exp(sum NLL / N), one example at a time, float64 log-softmax of full logits; no batching."""
    nll_trained = nll_all = 0.0
    n_trained = n_all = 0
    per_example = []
    for row in rows:
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
        token_nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
        trained = torch.tensor(row["assistant_masks"][1:], dtype=torch.bool)
        nll_trained += float(token_nll[trained].sum())
        n_trained += int(trained.sum())
        nll_all += float(token_nll.sum())
        n_all += len(token_nll)
        per_example.append(math.exp(float(token_nll[trained].sum()) / int(trained.sum())))
    return math.exp(nll_trained / n_trained), math.exp(nll_all / n_all), per_example


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_matches_one_at_a_time_reference(tiny_model: Any, tiny_tokenizer: Any, batch_size: int) -> None:
    rows = _rows(tiny_tokenizer)
    expected_trained, expected_all, expected_each = _reference(tiny_model, rows)
    result = perplexity(tiny_model, rows, batch_size=batch_size, window=512)
    assert result["perplexity"] == pytest.approx(expected_trained, rel=1e-4)
    assert result["perplexity_all_tokens"] == pytest.approx(expected_all, rel=1e-4)
    assert result["per_example"] == pytest.approx(expected_each, rel=1e-4)
    assert result["tokens"] == sum(sum(r["assistant_masks"][1:]) for r in rows)
    assert result["tokens_all"] == sum(len(r["input_ids"]) - 1 for r in rows)
    assert result["nll"] == pytest.approx(math.log(expected_trained), rel=1e-4)
    # A random 320-token model is near-uniform: perplexity is of the order of the vocabulary size.
    assert 100 < result["perplexity"] < 1000


def test_bf16_packed_rows_equal_one_example_at_a_time_exactly(
    tiny_model_dir: Any, tiny_tokenizer: Any
) -> None:
    """bf16 weights: right-padded batches drift from the plain loop (the attention kernel a mask selects
    rounds differently); one packed row with per-example causal attention gives the plain loop's numbers."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    rows = _rows(tiny_tokenizer)
    plain_nll = plain_count = 0.0
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            labels = ids.masked_fill(torch.tensor([row["assistant_masks"]]) == 0, -100)
            count = int((labels[0, 1:] != -100).sum())
            plain_nll += float(model(input_ids=ids, labels=labels).loss) * count
            plain_count += count
    with packed_rows(model) as packed:
        assert packed
    result = perplexity(model, rows, batch_size=8, window=512)
    assert result["perplexity"] == pytest.approx(math.exp(plain_nll / plain_count), rel=1e-6)
    assert model.config._attn_implementation == "sdpa"  # scoring never leaves the model switched


def test_eager_attention_and_sliding_windows_get_padded_batches(
    tiny_model_dir: Any, tiny_tokenizer: Any
) -> None:
    from transformers import AutoModelForCausalLM

    windowed = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    windowed.config.sliding_window = 16  # what Mistral/Gemma configs carry; per-example SDPA would ignore it
    with packed_rows(windowed) as packed:
        assert not packed
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    with packed_rows(model) as packed:
        assert not packed
    rows = _rows(tiny_tokenizer)
    expected = _reference(model, rows)[0]
    assert perplexity(model, rows, batch_size=3, window=512)["perplexity"] == pytest.approx(
        expected, rel=1e-4
    )


def test_trained_only_mode_gives_the_same_trained_perplexity(tiny_model: Any, tiny_tokenizer: Any) -> None:
    rows = _rows(tiny_tokenizer)
    full = perplexity(tiny_model, rows, batch_size=4, window=512)
    trained_only = perplexity(tiny_model, rows, batch_size=4, window=512, all_tokens=False)
    assert trained_only["perplexity"] == pytest.approx(full["perplexity"], rel=1e-5)
    assert math.isnan(trained_only["perplexity_all_tokens"])


def test_plan_windows_scores_every_token_once_with_context() -> None:
    windows = plan_windows([10, 3], window=4, stride=2)
    assert windows == [
        Window(0, 0, 4, 1),
        Window(0, 2, 6, 4),
        Window(0, 4, 8, 6),
        Window(0, 6, 10, 8),
        Window(1, 0, 3, 1),
    ]
    scored = [t for w in windows if w.example == 0 for t in range(w.score_from, w.end)]
    assert scored == list(range(1, 10))
    with pytest.raises(ValueError, match="stride"):
        plan_windows([10], window=4, stride=4)


def test_sliding_window_matches_token_by_token_reference(tiny_model: Any, tiny_tokenizer: Any) -> None:
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 6)
    row = tokenize_text(tiny_tokenizer, text, 10_000)
    ids, window, stride = row["input_ids"], 24, 8
    assert len(ids) > 3 * window
    # Token t is scored in the first window [k*stride, k*stride + window) that contains it.
    nll = 0.0
    for t in range(1, len(ids)):
        begin = max(0, math.ceil((t - window + 1) / stride)) * stride
        with torch.no_grad():
            logits = tiny_model(torch.tensor([ids[begin : t + 1]])).logits[0, -2].double()
        nll -= float(torch.log_softmax(logits, dim=-1)[ids[t]])
    expected = math.exp(nll / (len(ids) - 1))
    result = perplexity(tiny_model, [row], batch_size=4, window=window, stride=stride)
    assert result["windows"] == len(plan_windows([len(ids)], window, stride)) > 3
    assert result["tokens"] == len(ids) - 1
    assert result["perplexity"] == pytest.approx(expected, rel=1e-4)
    whole = perplexity(tiny_model, [row], window=len(ids))
    assert whole["windows"] == 1 and whole["perplexity"] != pytest.approx(expected, rel=1e-6)


def test_lora_adapter_passes_through(tiny_model: Any, tiny_tokenizer: Any) -> None:
    from peft import LoraConfig, get_peft_model

    rows = _rows(tiny_tokenizer)
    before = perplexity(tiny_model, rows, window=512)["perplexity"]
    peft_model = get_peft_model(tiny_model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert perplexity(peft_model, rows, window=512)["perplexity"] == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    changed = perplexity(peft_model, rows, window=512)["perplexity"]
    assert changed != pytest.approx(before, rel=1e-3)
    assert changed == pytest.approx(_reference(peft_model, rows)[0], rel=1e-4)


def test_distribution_ignores_nan() -> None:
    spread = distribution([4.0, float("nan"), 1.0, 2.0, 3.0])
    assert spread["mean"] == 2.5 and spread["median"] == 2.5 and spread["min"] == 1.0 and spread["max"] == 4.0
    assert distribution([float("nan")])["mean"] is None
