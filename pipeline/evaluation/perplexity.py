"""Token-weighted perplexity: batched, length-sorted, sliding windows, logits only where a loss is needed.

Perplexity is exp(sum NLL / N) over scored tokens, never a mean of per-example perplexities. Two numbers
come out of one pass: over the trained tokens (`assistant_masks` = 1, what SFT optimises) and over every
token of the sequence. The first token of a sequence has no prediction, so N counts positions 1..len-1.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Window:
    """Tokens [begin, end) of one example go through the model; targets [score_from, end) are scored."""

    example: int
    begin: int
    end: int
    score_from: int


def plan_windows(lengths: Sequence[int], window: int, stride: int) -> list[Window]:
    """Split each example into model-sized windows; every target token is scored exactly once.

    An example of at most `window` tokens is one window. A longer one gets windows starting every `stride`
    tokens, each scoring only the tokens the previous window did not, so every scored token (after the
    first window) sees at least `window - stride` tokens of context.
    """
    if window < 2 or not 0 < stride < window:
        # stride == window would leave the first token of each later window without context to predict it.
        raise ValueError(f"need window >= 2 and 0 < stride < window (got window={window}, stride={stride})")
    windows: list[Window] = []
    for example, length in enumerate(lengths):
        scored_until = 1
        for begin in range(0, max(length - 1, 1), stride):
            end = min(begin + window, length)
            windows.append(Window(example, begin, end, scored_until))
            scored_until = end
            if end == length:
                break
    return windows


def _batch(
    windows: list[Window], ids: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], all_tokens: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask, `keep` (positions whose next token is scored), trained flags."""
    import torch

    width = max(w.end - w.begin for w in windows)
    input_ids = torch.zeros(len(windows), width, dtype=torch.long)
    attention = torch.zeros(len(windows), width, dtype=torch.long)
    keep = torch.zeros(len(windows), width, dtype=torch.bool)
    trained = torch.zeros(len(windows), width, dtype=torch.bool)
    for row, w in enumerate(windows):
        n = w.end - w.begin
        input_ids[row, :n] = torch.tensor(ids[w.example][w.begin : w.end])
        attention[row, :n] = 1
        # Position p predicts token p + 1: targets [score_from, end) need positions [score_from - 1, end - 1).
        first, last = w.score_from - 1 - w.begin, n - 1
        target_trained = torch.tensor(masks[w.example][w.score_from : w.end], dtype=torch.bool)
        trained[row, first:last] = target_trained
        keep[row, first:last] = True if all_tokens else target_trained
    return input_ids, attention, keep, trained


def _token_nll(
    model: PreTrainedModel, input_ids: torch.Tensor, attention: torch.Tensor, keep: torch.Tensor
) -> Any:
    """NLL (float64, CPU) of the next token at every `keep` position, in row-major order.

    `logits_to_keep` as a boolean mask makes the model project only those positions onto the vocabulary
    (the lm_head is ~20% of a small model's FLOPs), and only those logits are upcast to float32.
    """
    import torch

    device = model.device
    targets = torch.roll(input_ids, shifts=-1, dims=1)[keep].to(device)
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        logits_to_keep=keep.to(device),
        use_cache=False,
    )
    logits = out.logits
    if logits.dim() == 3:  # a model whose forward ignores a boolean logits_to_keep
        logits = logits[keep.to(device)]
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return nll.double().cpu()


def _order(windows: list[Window], batch_size: int) -> list[list[Window]]:
    """Longest windows first (an out-of-memory error shows at once), similar lengths batched together."""
    ordered = sorted(windows, key=lambda w: w.end - w.begin, reverse=True)
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """Mean, median, 10th/90th percentiles, min and max of finite values (None when there are none)."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return {"mean": None, "median": None, "p10": None, "p90": None, "min": None, "max": None}

    def quantile(q: float) -> float:
        return finite[max(0, min(len(finite) - 1, round(q * (len(finite) - 1))))]

    return {
        "mean": statistics.fmean(finite),
        "median": statistics.median(finite),
        "p10": quantile(0.1),
        "p90": quantile(0.9),
        "min": finite[0],
        "max": finite[-1],
    }


def perplexity(
    model: PreTrainedModel,
    dataset: Any,
    batch_size: int = 8,
    window: int | None = None,
    stride: int | None = None,
    all_tokens: bool = True,
) -> dict[str, Any]:
    """Perplexity over trained tokens and (with all_tokens) over whole sequences, with per-example values.

    dataset: rows with `input_ids` and `assistant_masks` (a datasets.Dataset or a list of dicts), not
    truncated: examples longer than `window` (default: the model's context) are scored in sliding windows
    that advance by `stride` tokens (default: half a window).
    """
    import torch

    ids: list[list[int]] = [list(row["input_ids"]) for row in dataset]
    masks: list[list[int]] = [list(row["assistant_masks"]) for row in dataset]
    window = window or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    stride = stride or max(1, window // 2)
    windows = plan_windows([len(x) for x in ids], window, stride)
    nll_trained = [0.0] * len(ids)
    n_trained = [0] * len(ids)
    nll_all, n_all = 0.0, 0
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in _order(windows, batch_size):
                input_ids, attention, keep, trained = _batch(batch, ids, masks, all_tokens)
                if not keep.any():
                    continue
                token_nll = _token_nll(model, input_ids, attention, keep)
                is_trained = trained[keep]
                nll_all += float(token_nll.sum())
                n_all += int(token_nll.numel())
                rows = keep.nonzero()[:, 0]
                for row, w in enumerate(batch):
                    picked = (rows == row) & is_trained
                    nll_trained[w.example] += float(token_nll[picked].sum())
                    n_trained[w.example] += int(picked.sum())
    finally:
        model.train(was_training)
    total = sum(n_trained)
    per_example = [
        math.exp(n / c) if c else float("nan") for n, c in zip(nll_trained, n_trained, strict=True)
    ]
    nan = float("nan")
    return {
        "perplexity": math.exp(sum(nll_trained) / total) if total else nan,
        "nll": sum(nll_trained) / total if total else nan,
        "perplexity_all_tokens": math.exp(nll_all / n_all) if all_tokens and n_all else nan,
        "tokens": total,
        "tokens_all": n_all if all_tokens else None,
        "examples": len(ids),
        "windows": len(windows),
        "window": window,
        "stride": stride,
        "per_example": per_example,
        "per_example_distribution": distribution(per_example),
        "seconds": time.perf_counter() - started,
    }
