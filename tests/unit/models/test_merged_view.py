"""The adapter folded in for decoding: same greedy answers as unmerged, exact weights back afterwards."""

from __future__ import annotations

from typing import Any

import torch
from conftest import CONVERSATIONS

from pipeline.inference.generation import Sampling, generate
from pipeline.models.merged_view import adapter_merged, can_merge, merged_for_inference


def _adapted(model: Any) -> Any:
    """The tiny model with a LoRA adapter whose B is non-zero (so it changes the answers)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.2)
    return peft_model.eval()


def _answers(model: Any, tokenizer: Any) -> list[str]:
    prompts = [[m for m in c if m["role"] != "assistant"][:2] for c in CONVERSATIONS[:3]]
    return generate(model, tokenizer, prompts, Sampling(max_new_tokens=12), batch_size=3).texts


def _weights(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}


def test_merged_block_gives_the_unmerged_answers_and_restores_the_exact_weights(
    tiny_model: Any, tiny_tokenizer: Any
) -> None:
    model = _adapted(tiny_model)
    ids = torch.tensor([[1, 5, 9, 22, 40, 7]])
    with torch.no_grad():
        unmerged_logits = model(ids).logits
    unmerged_answers = _answers(model, tiny_tokenizer)
    with model.disable_adapter():
        assert _answers(model, tiny_tokenizer) != unmerged_answers  # the adapter changes the answers
    before = _weights(model)
    assert can_merge(model)
    with adapter_merged(model):
        layers = [m for m in model.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
        assert layers and all(layer.merged for layer in layers)
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, unmerged_logits, rtol=1e-4, atol=1e-4)
        assert _answers(model, tiny_tokenizer) == unmerged_answers
    assert not any(layer.merged for layer in layers)
    after = _weights(model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_bf16_weights_come_back_bit_for_bit(tiny_model_dir: Any) -> None:
    from transformers import AutoModelForCausalLM

    model = _adapted(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16))
    before = _weights(model)
    with adapter_merged(model):
        merged = _weights(model)
    assert any(not torch.equal(before[n], merged[n]) for n in before)  # the block really ran merged
    after = _weights(model)
    assert all(torch.equal(before[n], after[n]) for n in before)


def test_disabled_adapter_and_plain_models_are_left_alone(tiny_model: Any) -> None:
    assert not can_merge(tiny_model)
    model = _adapted(tiny_model)
    with model.disable_adapter():
        assert not can_merge(model)
        before = _weights(model)
        with adapter_merged(model):
            assert all(torch.equal(before[n], p) for n, p in _weights(model).items())


def test_merged_for_inference_is_a_plain_model_with_the_same_answers(
    tiny_model: Any, tiny_tokenizer: Any
) -> None:
    from peft import PeftModel

    model = _adapted(tiny_model)
    expected = _answers(model, tiny_tokenizer)
    merged = merged_for_inference(model)
    assert not isinstance(merged, PeftModel)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert _answers(merged, tiny_tokenizer) == expected
