"""Cosine similarity of generated answers to reference answers with a sentence-transformers model."""

from __future__ import annotations

import statistics
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@lru_cache(maxsize=2)
def load_embedder(name: str) -> SentenceTransformer:
    """The sentence-transformers model, resolved through the offline model zoo."""
    from sentence_transformers import SentenceTransformer

    from pipeline.assets import resolve_model

    return SentenceTransformer(str(resolve_model(name)), device="cpu")


def similarities(predictions: list[str], references: list[str], model_name: str) -> list[float]:
    """Cosine similarity of each prediction to its reference, in [-1, 1]."""
    if not predictions:
        return []
    embedder = load_embedder(model_name)
    pred = embedder.encode(predictions, convert_to_tensor=True, normalize_embeddings=True)
    ref = embedder.encode(references, convert_to_tensor=True, normalize_embeddings=True)
    return [float(x) for x in (pred * ref).sum(dim=1)]


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean, median and 10th percentile of similarity values."""
    if not values:
        return {"mean": None, "median": None, "p10": None, "n": 0}
    ordered = sorted(values)
    p10 = ordered[max(0, int(round(0.1 * (len(ordered) - 1))))]
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "p10": p10, "n": len(values)}
