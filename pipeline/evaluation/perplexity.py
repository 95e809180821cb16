"""Token-weighted perplexity over pre-tokenized examples, batched and sorted by length."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def perplexity(model: PreTrainedModel, dataset: Dataset, batch_size: int = 8) -> dict[str, Any]:
    """exp(mean NLL) over trained tokens (`assistant_masks`) and over all tokens, with per-example values.

    The first token of a sequence has no prediction, so N counts positions 1..len-1.
    """
    import torch

    ids_list: list[list[int]] = dataset["input_ids"]
    masks: list[list[int]] = dataset["assistant_masks"]
    nll = [0.0] * len(ids_list)
    counts = [0] * len(ids_list)
    nll_all, count_all = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        for batch in _batches([len(x) for x in ids_list], batch_size):
            width = max(len(ids_list[i]) for i in batch)
            input_ids = torch.zeros(len(batch), width, dtype=torch.long)
            attention = torch.zeros(len(batch), width, dtype=torch.long)
            trained = torch.zeros(len(batch), width, dtype=torch.bool)
            for row, index in enumerate(batch):
                n = len(ids_list[index])
                input_ids[row, :n] = torch.tensor(ids_list[index])
                attention[row, :n] = 1
                trained[row, :n] = torch.tensor(masks[index], dtype=torch.bool)
            input_ids, attention = input_ids.to(model.device), attention.to(model.device)
            with torch.inference_mode():
                logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            token_nll = torch.nn.functional.cross_entropy(
                logits.transpose(1, 2), input_ids[:, 1:], reduction="none"
            ).cpu().double()
            valid = attention[:, 1:].cpu().bool()
            target_trained = trained[:, 1:] & valid
            nll_all += float(token_nll[valid].sum())
            count_all += int(valid.sum())
            for row, index in enumerate(batch):
                nll[index] = float(token_nll[row][target_trained[row]].sum())
                counts[index] = int(target_trained[row].sum())
    finally:
        model.train(was_training)
    total = sum(counts)
    per_example = [math.exp(n / c) if c else float("nan") for n, c in zip(nll, counts)]
    return {
        "perplexity": math.exp(sum(nll) / total) if total else float("nan"),
        "perplexity_all_tokens": math.exp(nll_all / count_all) if count_all else float("nan"),
        "tokens": total,
        "examples": len(ids_list),
        "per_example": per_example,
    }
