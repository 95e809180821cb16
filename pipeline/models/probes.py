"""Logit probes: run two models on the same chat prompts and say whether they agree within a dtype's tolerance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


PROBE_PROMPTS = ("What does json.dumps do?", "Write one short sentence about the sea.")


# Largest |logit difference| allowed, relative to the largest |logit|: reloading repeats the same
# arithmetic, so anything beyond rounding noise means the saved files do not reproduce the model.
RELATIVE_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}


def probe_batch(
    tokenizer: PreTrainedTokenizerBase, extra_tokens: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """A padded batch of chat-rendered prompts; added special tokens appear in it so their rows count."""
    texts = [f"{p} {' '.join(extra_tokens or [])}".strip() for p in PROBE_PROMPTS]
    rendered = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
        )
        for t in texts
    ]
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    try:
        return dict(tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False))
    finally:
        tokenizer.padding_side = side


def probe_logits(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """float32 CPU logits of the batch in eval mode (the model's train/eval mode is restored)."""
    import torch

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
    finally:
        model.train(was_training)
    if logits.dim() == 2:  # a reward model: one score per sequence
        return logits.float().cpu()
    mask = batch["attention_mask"].bool()
    return logits.float().cpu()[mask]  # padded positions dropped: (tokens, vocab)


def compare_logits(reference: torch.Tensor, other: torch.Tensor, dtype_name: str) -> dict[str, Any]:
    """Largest absolute logit difference, relative to the largest logit, and whether it is tolerable."""
    if reference.shape != other.shape:
        return {
            "passed": False,
            "reason": f"logit shapes differ: {tuple(reference.shape)} vs {tuple(other.shape)}",
        }
    diff = float((reference - other).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    tolerance = RELATIVE_TOLERANCE.get(dtype_name, RELATIVE_TOLERANCE["bfloat16"])
    return {
        "max_abs_diff": diff,
        "max_abs_logit": scale,
        "relative_diff": diff / scale,
        "relative_tolerance": tolerance,
        "passed": diff / scale <= tolerance,
    }


def dtype_name(model: PreTrainedModel) -> str:
    """The lowest float precision among the weights: trl keeps QLoRA adapters in bf16 while a plain
    peft reload computes them in fp32, so such a model is held to the bf16 tolerance."""
    import torch

    dtypes = {p.dtype for p in model.parameters() if p.dtype.is_floating_point}
    for dtype in (torch.bfloat16, torch.float16):
        if dtype in dtypes:
            return str(dtype).removeprefix("torch.")
    return "float32"
