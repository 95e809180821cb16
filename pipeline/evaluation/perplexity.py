"""Token-weighted perplexity: batched, length-sorted, sliding windows, logits only where a loss is needed.

Perplexity is exp(sum NLL / N) over scored tokens, never a mean of per-example perplexities. Two numbers
come out of one pass: over the trained tokens (`assistant_masks` = 1, what SFT optimises) and over every
token of the sequence. The first token of a sequence has no prediction, so N counts positions 1..len-1.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

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


@dataclass(frozen=True)
class Batch:
    """One forward pass: ids, attention mask (padded rows) or position ids (one packed row), `keep` (positions
    whose next token is scored), `trained` flags, and `window` (the batch's window index at each position)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    keep: torch.Tensor
    trained: torch.Tensor
    window: torch.Tensor


def _targets(w: Window, masks: Sequence[Sequence[int]], all_tokens: bool) -> tuple[list[bool], list[bool]]:
    """(keep, trained) flags for the positions of one window: position p predicts token p + 1."""
    n = w.end - w.begin
    first = w.score_from - 1 - w.begin  # targets [score_from, end) need positions [score_from - 1, end - 1)
    trained = [False] * first + [bool(m) for m in masks[w.example][w.score_from : w.end]] + [False]
    keep = [True] * n if all_tokens else list(trained)
    if all_tokens:
        keep[:first] = [False] * first
        keep[n - 1] = False
    return keep, trained


def _padded(
    windows: list[Window], ids: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], all_tokens: bool
) -> Batch:
    """Windows as right-padded rows with an attention mask."""
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
        row_keep, row_trained = _targets(w, masks, all_tokens)
        keep[row, :n], trained[row, :n] = torch.tensor(row_keep), torch.tensor(row_trained)
    rows = torch.arange(len(windows)).unsqueeze(1).expand(-1, width)
    return Batch(input_ids, attention, None, keep, trained, rows)


def _packed(
    windows: list[Window], ids: Sequence[Sequence[int]], masks: Sequence[Sequence[int]], all_tokens: bool
) -> Batch:
    """Windows back to back in one row, position ids restarting at 0 for each: no padding, and each window
    attends only to itself (per-example causal attention), exactly as when scored alone."""
    import torch

    tokens: list[int] = []
    positions: list[int] = []
    keep: list[bool] = []
    trained: list[bool] = []
    owner: list[int] = []
    for index, w in enumerate(windows):
        tokens += ids[w.example][w.begin : w.end]
        positions += range(w.end - w.begin)
        window_keep, window_trained = _targets(w, masks, all_tokens)
        keep += window_keep
        trained += window_trained
        owner += [index] * (w.end - w.begin)

    def row(values: list[Any], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor([values], dtype=dtype)

    return Batch(
        row(tokens, torch.long), None, row(positions, torch.long), row(keep, torch.bool),
        row(trained, torch.bool), row(owner, torch.long),
    )  # fmt: skip


def _token_nll(model: PreTrainedModel, batch: Batch, greedy: bool = False) -> Any:
    """NLL (float64, CPU) of the next token at every `keep` position, in row-major order; with greedy, also
    whether that token is the model's argmax there (a pair).

    `logits_to_keep` as a boolean mask makes the model project only those positions onto the vocabulary
    (the lm_head is ~20% of a small model's FLOPs), and only those logits are upcast to float32.
    """
    import torch

    device = model.device
    keep = batch.keep.to(device)
    targets = torch.roll(batch.input_ids, shifts=-1, dims=1)[batch.keep].to(device)
    optional = {"attention_mask": batch.attention_mask, "position_ids": batch.position_ids}
    out = model(
        input_ids=batch.input_ids.to(device),
        logits_to_keep=keep,
        use_cache=False,
        **{name: value.to(device) for name, value in optional.items() if value is not None},
    )
    logits = out.logits
    if logits.dim() == 3:  # a model whose forward ignores a boolean logits_to_keep
        logits = logits[keep]
    nll = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    if greedy:
        return nll.double().cpu(), (logits.argmax(-1) == targets).cpu()
    return nll.double().cpu()


@contextlib.contextmanager
def packed_rows(model: PreTrainedModel) -> Iterator[bool]:
    """While the block runs, whether the model scores packed rows exactly: SDPA (switched to per-example
    `packed_sdpa` for the block only) or flash attention (varlen from position ids); eager attention, other
    kernels and sliding-window models get padded batches."""
    from pipeline.train.attention import packed_attention

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    # Per-example causal SDPA would ignore a sliding window.
    with packed_attention(model, active=not getattr(config, "sliding_window", None)) as packed:
        yield packed


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
        with torch.inference_mode(), packed_rows(model) as packed:
            make_batch = _packed if packed else _padded
            for group in _order(windows, batch_size):
                batch = make_batch(group, ids, masks, all_tokens)
                if not batch.keep.any():
                    continue
                token_nll = _token_nll(model, batch)
                is_trained = batch.trained[batch.keep]
                nll_all += float(token_nll.sum())
                n_all += int(token_nll.numel())
                owners = batch.window[batch.keep]
                for index, w in enumerate(group):
                    picked = (owners == index) & is_trained
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


def loglikelihoods(
    model: PreTrainedModel, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 8
) -> list[tuple[float, bool]]:
    """(log-likelihood, is greedy) of each continuation given its context, as token ids: lm-eval's
    loglikelihood request, through the same packed, per-example-attention scoring as perplexity().

    Each pair is scored as one row (context + continuation, the last token dropped as input); rows longer
    than the model's context keep their last tokens, as lm-eval's Hugging Face wrapper does.
    """
    import torch

    limit = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    ids, masks = [], []
    for context, continuation in pairs:
        row = (list(context) + list(continuation))[-(limit + 1) :]
        ids.append(row)
        masks.append([0] * (len(row) - len(continuation)) + [1] * len(continuation))
    windows = [Window(i, 0, len(row), 1) for i, row in enumerate(ids)]  # the masks pick the scored tokens
    total = [0.0] * len(ids)
    greedy = [True] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), packed_rows(model) as packed:
            make_batch = _packed if packed else _padded
            for group in _order(windows, batch_size):
                batch = make_batch(group, ids, masks, False)
                token_nll, hits = _token_nll(model, batch, greedy=True)
                owners = batch.window[batch.keep]
                for index, w in enumerate(group):
                    picked = owners == index
                    total[w.example] -= float(token_nll[picked].sum())
                    greedy[w.example] = bool(hits[picked].all())
    finally:
        model.train(was_training)
    return list(zip(total, greedy, strict=True))
