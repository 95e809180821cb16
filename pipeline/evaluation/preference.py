"""Held-out preference pairs: how much more likely a model finds the chosen answer than the rejected one.

Each side (base or SFT parent before training, adapted after) gets the summed log-probability of each pair's
chosen and rejected answer given its prompt (what DPO's loss compares). Its `accuracy` is the share of pairs
whose chosen answer is the more likely. Against the starting model, the adapted model's implicit DPO reward
of an answer is its log-probability change (β = 1 here: accuracy does not depend on β); `reward_accuracy` is
the share of pairs where the chosen answer's reward beats the rejected one's, `reward_margin` their mean gap.
For KTO's labelled completions, `desirable_logp` and `undesirable_logp` are the mean log-probabilities of each
kind and `gap` their difference; the comparison gives each kind's change against the starting model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.data.formatting import render

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    size = min(len(a), len(b))
    return next((i for i in range(size) if a[i] != b[i]), size)


def prepare_pairs(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_examples: int, max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids of the first max_examples pairs among the eval records: prompt, chosen and rejected answer,
    split where trl splits them (where prompt and prompt+answer stop agreeing), truncated to max_length."""
    pairs = []
    for record in [r for r in records if "rejected" in r][:max_examples]:
        turns = record["prompt_turns"]
        prompt = record["messages"][:turns]
        prompt_ids = _ids(tokenizer, render(tokenizer, prompt, add_generation_prompt=True))
        chosen = _ids(tokenizer, render(tokenizer, record["messages"]))
        rejected = _ids(tokenizer, render(tokenizer, prompt + record["rejected"]))
        start = min(_common_prefix(prompt_ids, chosen), _common_prefix(prompt_ids, rejected))
        if start >= max_length - 1:
            continue  # nothing of either answer fits; training drops such pairs too
        pairs.append(
            {
                "prompt_ids": prompt_ids[:start],
                "chosen_ids": chosen[start:max_length],
                "rejected_ids": rejected[start:max_length],
            }
        )
    return pairs


def _answer_logps(model: PreTrainedModel, rows: list[tuple[list[int], int]], pad_id: int) -> list[float]:
    """Summed log-probability of the tokens after position `start` of each (ids, start) row (one batch)."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for index, (ids, start) in enumerate(rows):
        input_ids[index, : len(ids)] = torch.tensor(ids)
        attention[index, : len(ids)] = 1
        scored[index, start : len(ids)] = True
    device = model.device
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
    logps = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = input_ids[:, 1:].to(device)
    token_logps = logps.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * scored[:, 1:].to(device)
    return [float(v) for v in token_logps.sum(dim=1).cpu()]


def score_pairs(
    model: PreTrainedModel, pairs: list[dict[str, list[int]]], batch_size: int, pad_id: int
) -> dict[str, Any]:
    """{accuracy, margin, chosen_logp, rejected_logp (means), pairs, per_pair: {chosen, rejected}} for one model."""
    import torch

    chosen: list[float] = []
    rejected: list[float] = []
    model.eval()
    with torch.inference_mode():
        for first in range(0, len(pairs), batch_size):
            batch = pairs[first : first + batch_size]
            start = [len(p["prompt_ids"]) for p in batch]
            rows = [(p["prompt_ids"] + p["chosen_ids"], s) for p, s in zip(batch, start, strict=True)]
            rows += [(p["prompt_ids"] + p["rejected_ids"], s) for p, s in zip(batch, start, strict=True)]
            values = _answer_logps(model, rows, pad_id)
            chosen += values[: len(batch)]
            rejected += values[len(batch) :]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    count = max(len(pairs), 1)
    return {
        "pairs": len(pairs),
        "accuracy": sum(m > 0 for m in margins) / count,
        "margin": sum(margins) / count,
        "chosen_logp": sum(chosen) / count,
        "rejected_logp": sum(rejected) / count,
        "per_pair": {"chosen": chosen, "rejected": rejected},
    }


def compare_pairs(base: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any] | None:
    """The adapted model's implicit rewards against the starting model on the same pairs; None if unscored."""
    before, after = base.get("per_pair"), adapted.get("per_pair")
    if not before or not after or len(before["chosen"]) != len(after["chosen"]) or not after["chosen"]:
        return None
    chosen = [a - b for b, a in zip(before["chosen"], after["chosen"], strict=True)]
    rejected = [a - b for b, a in zip(before["rejected"], after["rejected"], strict=True)]
    gaps = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return {
        "reward_accuracy": sum(g > 0 for g in gaps) / len(gaps),
        "reward_margin": sum(gaps) / len(gaps),
        "chosen_logp_change": sum(chosen) / len(chosen),
        "rejected_logp_change": sum(rejected) / len(rejected),
        "reward_margins": gaps,
    }


def prepare_completions(
    records: list[dict[str, Any]], tokenizer: PreTrainedTokenizerBase, max_examples: int, max_length: int
) -> list[dict[str, Any]]:
    """Token ids of the first max_examples labelled completions (KTO records): prompt, completion, label."""
    rows = []
    for record in [r for r in records if "label" in r][:max_examples]:
        prompt = record["messages"][: record["prompt_turns"]]
        prompt_ids = _ids(tokenizer, render(tokenizer, prompt, add_generation_prompt=True))
        full = _ids(tokenizer, render(tokenizer, record["messages"]))
        start = _common_prefix(prompt_ids, full)
        if start < max_length - 1:
            rows.append(
                {
                    "prompt_ids": prompt_ids[:start],
                    "completion_ids": full[start:max_length],
                    "label": record["label"],
                }
            )
    return rows


def score_completions(
    model: PreTrainedModel, rows: list[dict[str, Any]], batch_size: int, pad_id: int
) -> dict[str, Any]:
    """{desirable_logp, undesirable_logp, gap (means), records, per_record} for one model."""
    import torch

    logps: list[float] = []
    model.eval()
    with torch.inference_mode():
        for first in range(0, len(rows), batch_size):
            batch = rows[first : first + batch_size]
            ids = [(r["prompt_ids"] + r["completion_ids"], len(r["prompt_ids"])) for r in batch]
            logps += _answer_logps(model, ids, pad_id)
    good = [v for v, r in zip(logps, rows, strict=True) if r["label"]]
    bad = [v for v, r in zip(logps, rows, strict=True) if not r["label"]]
    desirable = sum(good) / len(good) if good else None
    undesirable = sum(bad) / len(bad) if bad else None
    gap = desirable - undesirable if desirable is not None and undesirable is not None else None
    return {
        "records": len(rows),
        "desirable_logp": desirable,
        "undesirable_logp": undesirable,
        "gap": gap,
        "per_record": {"logp": logps, "label": [r["label"] for r in rows]},
    }


def compare_completions(base: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any] | None:
    """Each kind's mean log-prob change against the starting model; None if unscored."""
    changes = {}
    for kind in ("desirable", "undesirable"):
        before, after = base.get(f"{kind}_logp"), adapted.get(f"{kind}_logp")
        changes[f"{kind}_logp_change"] = after - before if before is not None and after is not None else None
    return changes if any(v is not None for v in changes.values()) else None
