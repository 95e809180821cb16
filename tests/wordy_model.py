"""A tiny random Llama whose greedy answers are space-separated words, so streamed text comes in pieces."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_wordy(model: Any, tokenizer: Any) -> Any:
    """Zero the output rows of every token but the ' word' ones (EOS included): greedy text is then words."""
    import torch

    words = [i for token, i in tokenizer.get_vocab().items() if token.startswith("Ġ") and token[1:].isalpha()]
    with torch.no_grad():
        others = torch.ones(model.lm_head.weight.shape[0], dtype=torch.bool)
        others[words] = False
        model.lm_head.weight[others] = 0
        model.lm_head.weight[words] *= 5
    return model


def save_wordy_model(folder: Path, tiny_model_dir: Path) -> Path:
    """Save a wordy copy of the tiny model (with its tokenizer) into folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = make_wordy(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
