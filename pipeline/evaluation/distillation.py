"""The teacher-student divergence on the eval split (train.stage: distill): the mean per-token
KL(teacher || student) over the eval rows' trained tokens, in nats, for the base and the adapted student.

Both models read the eval answers as written (teacher forcing), so the figure says how far the student's
next-token distribution is from the teacher's where the data has an answer: distillation should lower it.
Each row is scored over its first `window` tokens (eval.context_length, else train.max_length).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _log_probs(model: PreTrainedModel, ids: Any, mask: Any, keep: Any) -> Any:
    """float32 log-probabilities of the next token at the `keep` positions, shape (positions, vocab)."""
    out = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False)
    logits = out.logits if out.logits.dim() == 2 else out.logits[keep]  # a forward that ignores the mask
    return logits.float().log_softmax(dim=-1)


def teacher_divergence(
    student: PreTrainedModel,
    teacher: PreTrainedModel,
    rows: Sequence[dict[str, list[int]]],
    batch_size: int,
    window: int,
    pad_token_id: int,
) -> dict[str, Any]:
    """{'kl': mean KL(teacher || student) per trained token (nats), 'tokens', 'examples', 'seconds'} over
    rows ({'input_ids', 'assistant_masks'}, as pipeline.evaluation.runner.EvalSet holds them)."""
    import torch

    started = time.perf_counter()
    device = student.device
    total, tokens = 0.0, 0
    student.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            width = min(window, max(len(row["input_ids"]) for row in batch))
            ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            trained = torch.zeros((len(batch), width), dtype=torch.bool)
            for index, row in enumerate(batch):
                cut = row["input_ids"][:width]
                ids[index, : len(cut)] = torch.tensor(cut)
                mask[index, : len(cut)] = 1
                trained[index, : len(cut)] = torch.tensor(row["assistant_masks"][:width], dtype=torch.bool)
            # Position t predicts token t + 1: score where the next token is a trained one.
            keep = torch.zeros_like(trained)
            keep[:, :-1] = trained[:, 1:]
            if not keep.any():
                continue
            student_logp = _log_probs(student, ids.to(device), mask.to(device), keep.to(device))
            here = teacher.device
            teacher_logp = _log_probs(teacher, ids.to(here), mask.to(here), keep.to(here)).to(device)
            kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(dim=-1)
            total += float(kl.double().sum())
            tokens += int(kl.numel())
    return {
        "kl": total / tokens if tokens else None,
        "tokens": tokens,
        "examples": len(rows),
        "seconds": time.perf_counter() - started,
    }
