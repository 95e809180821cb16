"""Log-likelihoods of continuations that share a context (a multiple-choice question's options): the context
goes through the model once, its key/value cache is repeated for the options, and only the options' tokens are
computed again, instead of the whole question once per option.

Requests without a sibling go through pipeline.evaluation.perplexity.loglikelihoods (packed rows, per-example
attention); so do groups whose context and longest option would not fit the model's context.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.evaluation.perplexity import loglikelihoods

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _group(model: PreTrainedModel, context: list[int], options: list[list[int]]) -> list[tuple[float, bool]]:
    """(log-likelihood, is greedy) of each option after the one context."""
    import torch

    device = model.device
    out = model(input_ids=torch.tensor([context], device=device), use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)  # predicts every option's first token
    width = max(len(o) for o in options)
    rest = None
    if width > 1:  # the options' own tokens but the last, right-padded: padding comes after what is scored
        ids = torch.zeros(len(options), width - 1, dtype=torch.long)
        for row, option in enumerate(options):
            ids[row, : len(option) - 1] = torch.tensor(option[:-1])
        cache = out.cache
        cache.batch_repeat_interleave(len(options))
        rest = model(input_ids=ids.to(device), cache=cache, use_cache=False).logits.float()
        rest = torch.log_softmax(rest, dim=-1).cpu()
    first = first.cpu()
    results = []
    for row, option in enumerate(options):
        total, greedy = float(first[option[0]]), int(first.argmax()) == option[0]
        if len(option) > 1 and rest is not None:
            targets = torch.tensor(option[1:])
            scores = rest[row, : len(option) - 1]
            total += float(scores.gather(1, targets[:, None]).sum())
            greedy = greedy and bool((scores.argmax(-1) == targets).all())
        results.append((total, greedy))
    return results


def shared_context_loglikelihoods(
    model: PreTrainedModel, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 8
) -> list[tuple[float, bool]]:
    """(log-likelihood, is greedy) of each (context ids, continuation ids) pair, as lm-eval's loglikelihood
    request: pairs with the same context are scored as one group (module docstring), the others packed."""
    import torch

    limit = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, (context, _continuation) in enumerate(pairs):
        groups[tuple(context)].append(index)
    results: list[Any] = [None] * len(pairs)
    alone = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for context, members in groups.items():
                options = [list(pairs[i][1]) for i in members]
                if len(members) < 2 or not context or len(context) + max(map(len, options)) > limit:
                    alone += members
                    continue
                for index, scored in zip(members, _group(model, list(context), options), strict=True):
                    results[index] = scored
    finally:
        model.train(was_training)
    if alone:
        for index, scored in zip(
            alone, loglikelihoods(model, [pairs[i] for i in alone], batch_size), strict=True
        ):
            results[index] = scored
    return results
