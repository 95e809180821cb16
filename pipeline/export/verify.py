"""Check a GGUF with an independent reader: transformers loads it back; logits, token ids and template must agree."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Largest |logit difference| vs the fp32 merged model, relative to max(1, largest |logit|). Measured on a
# SmolLM2-135M lora-small export (docs/serving.md): f16 1.3e-3, bf16 8.8e-3, q8_0 3.3e-2; about 3x headroom.
TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "bf16": 3e-2, "q8_0": 1e-1}
SAMPLE_TEXT = (
    "What does json.dumps do? It serializes obj to a JSON formatted str: json.dumps({'a': [1, 2, 3]}) == "
    "'{\"a\": [1, 2, 3]}'.\n\n  Indented line\twith a tab, digits 1234567890, café, naïve, 東京, emoji 🙂."
)


@dataclass
class GgufCheck:
    """How a GGUF read back by transformers compares with the model and tokenizer it was written from."""

    max_abs_diff: float
    max_abs_logit: float
    relative_diff: float
    relative_tolerance: float
    top1_agreement: float  # share of probe positions whose most likely next token is the same
    sample_tokens: int
    token_ids_match: bool
    chat_template_match: bool
    read_seconds: float

    @property
    def passed(self) -> bool:
        """Logits within tolerance, same ids, same chat template."""
        return (
            self.relative_diff <= self.relative_tolerance
            and self.token_ids_match
            and self.chat_template_match
        )


def sample_texts(tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """Plain text (digits, accents, CJK, emoji, whitespace runs) and a chat-rendered conversation."""
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What does json.dumps do?"},
        {"role": "assistant", "content": "It serializes an object to a JSON string."},
        {"role": "user", "content": "And json.loads?"},
    ]
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return [SAMPLE_TEXT, chat]


def read_back(path: Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """The model (float32) and tokenizer transformers builds from a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise AssetError(
            f"{path}: transformers cannot read the written GGUF back ({str(exc).splitlines()[0]})."
        ) from None
    return model.eval(), tokenizer


def verify_gguf(
    path: Path, dtype: str, tokenizer: PreTrainedTokenizerBase, batch: dict[str, Any], logits: Any
) -> GgufCheck:
    """Read path back with transformers; compare its probe logits with logits and its tokenizer with tokenizer."""
    from pipeline.models.probes import probe_logits

    started = time.perf_counter()
    model, read_tokenizer = read_back(path)
    got = probe_logits(model, batch)
    del model
    if got.shape != logits.shape:
        raise AssetError(
            f"{path}: logits of shape {tuple(got.shape)} read back, expected {tuple(logits.shape)}."
        )
    diff = float((got - logits).abs().max())
    scale = max(1.0, float(logits.abs().max()))
    texts = sample_texts(tokenizer)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    return GgufCheck(
        max_abs_diff=diff,
        max_abs_logit=scale,
        relative_diff=diff / scale,
        relative_tolerance=TOLERANCE[dtype],
        top1_agreement=float((got.argmax(-1) == logits.argmax(-1)).float().mean()),
        sample_tokens=sum(len(i) for i in ids),
        token_ids_match=ids == [read_tokenizer(t)["input_ids"] for t in texts],
        chat_template_match=read_tokenizer.chat_template == tokenizer.chat_template,
        read_seconds=time.perf_counter() - started,
    )


def failure(check: GgufCheck, path: Path) -> str:
    """The one-line reason a check failed."""
    if not check.token_ids_match:
        return f"{path}: the GGUF's tokenizer gives other token ids than the run's on the sample text."
    if not check.chat_template_match:
        return f"{path}: the chat template read back from the GGUF differs from the run's."
    return (
        f"{path}: logits read back differ by {check.max_abs_diff:.3g} (relative {check.relative_diff:.2g}, "
        f"tolerance {check.relative_tolerance:.0e})."
    )
