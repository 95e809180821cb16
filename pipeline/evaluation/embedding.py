"""Cosine similarity of generated answers to reference answers with a sentence-transformers model, and the
95% confidence intervals that say how far a figure over a few generated answers can be trusted."""

from __future__ import annotations

import math
import statistics
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


def mean_interval(values: list[float]) -> list[float] | None:
    """95% confidence interval [low, high] of the mean cosine similarity (Student's t, clipped to the
    cosine's [-1, 1]); None with fewer than two finite values."""
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2:
        return None
    from scipy.stats import t

    mean = statistics.fmean(finite)
    half = float(t.ppf(0.975, len(finite) - 1)) * statistics.stdev(finite) / math.sqrt(len(finite))
    return [max(-1.0, mean - half), min(1.0, mean + half)]


def wilson_interval(share: float | None, n: int) -> list[float] | None:
    """95% Wilson score interval [low, high] of a share observed over n examples (a tie counts half, so
    the count of wins may be fractional); None without a share or examples."""
    if share is None or n < 1:
        return None
    z = statistics.NormalDist().inv_cdf(0.975)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summarize(values: list[float]) -> dict[str, Any]:
    """Mean (with its 95% interval, mean_ci95), median and 10th percentile of similarity values, and how
    many there are."""
    from pipeline.evaluation.perplexity import distribution

    spread = distribution(values)
    return {
        "mean": spread["mean"],
        "mean_ci95": mean_interval(values),
        "median": spread["median"],
        "p10": spread["p10"],
        "n": len(values),
    }


def closer_rate(base: list[float], adapted: list[float], margin: float = 1e-6) -> float | None:
    """Share of examples whose adapted answer is closer to the reference than the base answer (ties: half)."""
    if not base or len(base) != len(adapted):
        return None
    pairs = zip(base, adapted, strict=True)
    wins = sum(1.0 if a > b + margin else 0.5 if abs(a - b) <= margin else 0.0 for b, a in pairs)
    return wins / len(base)


def closer_summary(base: list[float], adapted: list[float]) -> dict[str, Any]:
    """closer_rate of the per-example similarities and its 95% Wilson interval, as metrics.json's
    comparison keys (adapted_closer_rate, adapted_closer_rate_ci95)."""
    rate = closer_rate(base, adapted)
    return {"adapted_closer_rate": rate, "adapted_closer_rate_ci95": wilson_interval(rate, len(base))}
