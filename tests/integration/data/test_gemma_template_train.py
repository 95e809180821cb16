"""A Gemma-family tiny model whose tokenizer has no chat template trains with model.chat_template: gemma and
a data.system_prompt (Gemma has no system role: the template folds it into the first user turn)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import build_tiny_tokenizer

from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.stages.build import build_trainer

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
SYSTEM = "Answer briefly."


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Gemma (2 layers, hidden 32) and a BPE tokenizer with Gemma's special tokens, no template."""
    from transformers import GemmaConfig, GemmaForCausalLM

    tokenizer = build_tiny_tokenizer(
        None,
        SPECIALS,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[4:],
    )
    assert tokenizer.chat_template is None
    torch.manual_seed(0)
    config = GemmaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    )
    folder = tmp_path_factory.mktemp("tiny-gemma")
    GemmaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_gemma_trains_a_step_with_a_system_prompt(make_recipe: Any, gemma_dir: Path, tmp_path: Path) -> None:
    path = make_recipe(
        model={"name": str(gemma_dir), "dtype": "float32", "chat_template": "gemma"},
        data={"system_prompt": SYSTEM},
        train={"max_steps": 1, "max_length": 256, "batch_size": 2, "warmup_ratio": 0.0},
    )
    recipe = load_recipe(str(path))
    inputs = prepare_inputs(recipe)
    first = inputs.train[0]
    text = inputs.tokenizer.decode(first["input_ids"])
    assert text.startswith(f"<bos><start_of_turn>user\n{SYSTEM}\n\n")  # the system turn, folded
    assert "system" not in text
    trained = inputs.tokenizer.decode(
        [t for t, m in zip(first["input_ids"], first["assistant_masks"], strict=True) if m]
    )
    assert SYSTEM not in trained and trained.endswith("<end_of_turn>\n")
    model = load_model(recipe)
    trainer = build_trainer(recipe, tmp_path / "run", model, inputs.tokenizer, inputs.train, None)
    output = trainer.train()
    assert output.global_step == 1 and math.isfinite(output.training_loss)
    lora_b = [v for k, v in trainer.model.state_dict().items() if "lora_B" in k]
    assert lora_b and any(torch.count_nonzero(v) for v in lora_b)
