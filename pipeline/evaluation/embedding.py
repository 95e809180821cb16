"""Cosine similarity of generated answers to reference answers with a sentence-transformers model."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@lru_cache(maxsize=2)
def load_embedder(name: str) -> SentenceTransformer:
    """The sentence-transformers model, resolved through the offline model zoo."""
    from sentence_transformers import SentenceTransformer

    from pipeline.models.assets import resolve_model

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
    """Mean, median and 10th percentile of similarity values, and how many there are."""
    from pipeline.evaluation.perplexity import distribution

    spread = distribution(values)
    return {"mean": spread["mean"], "median": spread["median"], "p10": spread["p10"], "n": len(values)}


def closer_rate(base: list[float], adapted: list[float], margin: float = 1e-6) -> float | None:
    """Share of examples whose adapted answer is closer to the reference than the base answer (ties: half)."""
    if not base or len(base) != len(adapted):
        return None
    pairs = zip(base, adapted, strict=True)
    wins = sum(1.0 if a > b + margin else 0.5 if abs(a - b) <= margin else 0.0 for b, a in pairs)
    return wins / len(base)
