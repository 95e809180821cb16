"""Answer similarity as a Hugging Face `evaluate` module: cosine similarity of each prediction to its
reference under a sentence-transformers model (default: the packaged all-MiniLM-L6-v2), offline.

    import evaluate
    metric = evaluate.load("pipeline/evaluation/modules/answer_similarity")
    metric.compute(predictions=["eating bread"], references=["eating food"])
    # {'mean': 0.705..., 'mean_ci95': None, 'median': ..., 'p10': ..., 'n': 1, 'scores': [0.705...]}

The pipeline scores its generated answers through this module (pipeline.evaluation.modules.load_module).
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate

from pipeline.evaluation.embedding import similarities, summarize

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class AnswerSimilarity(evaluate.Metric):
    """Mean, median, 10th percentile and 95% interval of the mean of per-answer cosine similarity."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Cosine similarity of predictions to references under a sentence-transformers model.",
            citation="",
            inputs_description="predictions, references: lists of strings; model: a sentence-transformers "
            "model name or folder (default all-MiniLM-L6-v2, resolved offline).",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self, predictions: list[str], references: list[str], model: str = DEFAULT_MODEL
    ) -> dict[str, Any]:
        scores = similarities(list(predictions), list(references), model)
        return {**summarize(scores), "scores": scores}
