"""Trained-token perplexity as a Hugging Face `evaluate` module: exp(total NLL / total tokens) over the tokens
a loss mask marks (an SFT run's assistant turns), token-weighted, with sliding windows for long examples.

    import evaluate
    metric = evaluate.load("pipeline/evaluation/modules/trained_token_perplexity")
    metric.compute(input_ids=[[1, 2, 3, 4]], assistant_masks=[[0, 0, 1, 1]], model=model)  # a loaded model
    # {'perplexity': ..., 'perplexity_all_tokens': ..., 'nll': ..., 'tokens': 2, 'per_example': [...]}

The pipeline computes its eval split's perplexity through this module (pipeline.evaluation.modules).
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from pipeline.evaluation.perplexity import perplexity


class TrainedTokenPerplexity(evaluate.Metric):
    """Perplexity over masked (trained) tokens and over all tokens, with per-example values."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Token-weighted perplexity of a causal LM over the tokens a loss mask marks.",
            citation="",
            inputs_description="input_ids, assistant_masks: token ids and 0/1 masks per example; model: a "
            "loaded transformers causal LM (a PeftModel too); batch_size, window, stride: optional ints.",
            features=datasets.Features(
                {
                    "input_ids": datasets.Sequence(datasets.Value("int64")),
                    "assistant_masks": datasets.Sequence(datasets.Value("int8")),
                }
            ),
        )

    def _compute(
        self,
        input_ids: list[list[int]],
        assistant_masks: list[list[int]],
        model: Any = None,
        batch_size: int = 8,
        window: int | None = None,
        stride: int | None = None,
    ) -> dict[str, Any]:
        if model is None:
            raise ValueError("trained_token_perplexity needs model=<a loaded causal LM>")
        rows = [
            {"input_ids": i, "assistant_masks": m} for i, m in zip(input_ids, assistant_masks, strict=True)
        ]
        return perplexity(model, rows, batch_size=batch_size, window=window, stride=stride)
