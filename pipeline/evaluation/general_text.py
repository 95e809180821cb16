"""Perplexity on general English text outside the training domain (eval.general_text): a forgetting check.

The text is the shipped set pipeline/evaluation/benchmark_tasks/general_text.jsonl (worked explanations
of MMLU and BIG-Bench Hard questions, built by scripts/build_benchmark_data.py; licences beside it), scored
as plain text (no chat template), every token but the first, through pipeline.evaluation.perplexity.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import EvalSpec
from pipeline.evaluation.perplexity import perplexity

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TEXT_FILE = Path(__file__).resolve().parent / "benchmark_tasks" / "general_text.jsonl"
WINDOW = 1024  # tokens per forward pass when eval.context_length is unset; the passages are far shorter
WORST = 5  # passages listed in the report as most worse


def passages(limit: int) -> list[str]:
    """The first `limit` passages of the shipped general-text set."""
    with TEXT_FILE.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for _, line in zip(range(limit), lines, strict=False)]


def general_perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: EvalSpec
) -> dict[str, Any]:
    """{'perplexity', 'tokens', 'examples', 'seconds', 'per_example'} over eval.general_text_examples passages."""
    rows = []
    for text in passages(spec.general_text_examples):
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        rows.append({"input_ids": ids, "assistant_masks": [1] * len(ids)})
    window = spec.context_length or WINDOW
    out = perplexity(
        model, rows, batch_size=spec.batch_size, window=window, stride=spec.stride, all_tokens=False
    )
    return {
        "perplexity": out["perplexity"],
        "tokens": out["tokens"],
        "examples": out["examples"],
        "seconds": out["seconds"],
        "per_example": out["per_example"],
    }


def most_worse(base: dict[str, Any], adapted: dict[str, Any], count: int = WORST) -> list[dict[str, Any]]:
    """The passages whose perplexity rose most (adapted / base), with their text, for the report."""
    before, after = base.get("per_example", []), adapted.get("per_example", [])
    texts = passages(len(after))
    ratios = [
        (a / b, i)
        for i, (b, a) in enumerate(zip(before, after, strict=False))
        if math.isfinite(a) and math.isfinite(b) and b > 0
    ]
    return [
        {"index": i, "text": texts[i][:300], "base": before[i], "adapted": after[i], "ratio": ratio}
        for ratio, i in sorted(ratios, reverse=True)[:count]
        if ratio > 1
    ]
