"""packed_sdpa: each example of a padding-free row attends only to itself, with the same result as alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pipeline.train import attention
from pipeline.train.attention import PACKED_SDPA, example_bounds, packed_attention


def _row(*lengths: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Examples of the given lengths, and their padding-free row with restarting position ids."""
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randint(3, 60, (1, n), generator=generator) for n in lengths]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    return examples, torch.cat(examples, dim=1), positions


def test_example_bounds_finds_each_example_of_a_row() -> None:
    """Offsets where position ids restart, closed by the row length; None for anything that is not a row."""
    _, row, positions = _row(3, 5, 2)
    assert example_bounds(positions, row.shape[1]) == [0, 3, 8, 10]
    assert example_bounds(torch.arange(6)[None], 6) is None  # one example: plain causal attention
    assert example_bounds(torch.tensor([[7]]), 1) is None  # a decoding step after a KV cache
    assert example_bounds(torch.zeros(2, 4, dtype=torch.long), 4) is None  # a padded batch of two rows
    assert example_bounds(None, 4) is None


@pytest.mark.parametrize(
    ("lengths", "short_kernel"),
    [((7, 5, 9), True), ((7, 5, 9), False), ((300, 20), True)],  # 300: the flash kernel's branch on CPU
    ids=["short-kernel", "sdpa-math", "flash-and-short"],
)
def test_packed_row_matches_each_example_alone(
    tiny_model: Any, lengths: tuple[int, ...], short_kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logits and gradients of a packed row equal those of the examples run one by one (tiny_model's query heads
    share key/value heads, as SmolLM2's do)."""
    monkeypatch.setitem(attention._SHORT_KERNEL, "enabled", short_kernel)
    examples, row, positions = _row(*lengths)
    alone = torch.cat([tiny_model(e, use_cache=False).logits for e in examples], dim=1)
    alone.square().mean().backward()
    expected_grad = tiny_model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    tiny_model.zero_grad()

    with packed_attention(tiny_model) as switched:
        assert switched is True
        assert tiny_model.config._attn_implementation == PACKED_SDPA
        packed = tiny_model(row, position_ids=positions, use_cache=False).logits
        packed.square().mean().backward()
    assert tiny_model.config._attn_implementation == "sdpa"  # the model's own choice after the block
    assert torch.allclose(packed, alone, atol=1e-5)
    grad = tiny_model.model.layers[0].self_attn.q_proj.weight.grad
    assert torch.allclose(grad, expected_grad, atol=1e-6)


def test_generation_is_unchanged_by_the_switch(tiny_model: Any) -> None:
    """Padded batches and KV-cache decoding take transformers' own SDPA path: the same tokens come out."""
    prompt = torch.tensor([[5, 9, 11, 4], [0, 0, 7, 8]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    before = tiny_model.generate(prompt, attention_mask=mask, **settings)
    with packed_attention(tiny_model):
        after = tiny_model.generate(prompt, attention_mask=mask, **settings)
    assert torch.equal(before, after)


def test_only_sdpa_models_are_switched(tiny_model: Any) -> None:
    """An explicit eager (or flash) choice stays: flash attention already handles padding-free rows."""
    tiny_model.set_attn_implementation("eager")
    with packed_attention(tiny_model) as switched:
        assert switched is False
        assert tiny_model.config._attn_implementation == "eager"


def test_a_saved_model_does_not_name_the_kernel(tiny_model: Any, tmp_path: Any) -> None:
    """Full fine-tuning saves the whole model: its config must load where packed_sdpa is not registered."""
    with packed_attention(tiny_model):
        tiny_model.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text(encoding="utf-8")
    assert PACKED_SDPA not in config and '"model_type": "llama"' in config
