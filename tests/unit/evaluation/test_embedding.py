"""Answer similarity with the packaged all-MiniLM-L6-v2, its summary, and the adapted-closer rate."""

from __future__ import annotations

import pytest

from pipeline.evaluation import lexical
from pipeline.evaluation.embedding import (
    closer_rate,
    closer_summary,
    mean_interval,
    similarities,
    summarize,
    wilson_interval,
)

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_similarity_ranks_related_sentences_higher() -> None:
    scores = similarities(["eating bread", "carrying a baby", "eating food"], ["eating food"] * 3, MINILM)
    assert scores[2] == pytest.approx(1.0, abs=1e-5)
    assert 0.6 < scores[0] < 0.8
    assert scores[1] < 0.3 < scores[0]
    assert similarities([], [], MINILM) == []


def test_summary_and_closer_rate() -> None:
    summary = summarize([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.0])
    half = 2.228139 * 0.1  # t(0.975, 10 degrees of freedom) x standard error (sd 0.3317 / sqrt(11))
    assert summary == {
        "mean": pytest.approx(0.5),
        "mean_ci95": pytest.approx([0.5 - half, 0.5 + half], abs=1e-6),
        "median": pytest.approx(0.5),
        "p10": pytest.approx(0.1),
        "n": 11,
    }
    assert summarize([])["mean"] is None
    assert closer_rate([0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.5, 0.6]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert closer_rate([], []) is None


def test_confidence_intervals_of_the_mean_similarity_and_the_closer_share() -> None:
    # 6 of 8 answers closer: the Wilson interval is [0.409, 0.929]; one answer more or less (5/8 = 63 %,
    # 7/8 = 88 %) stays inside it, which is what a reader of "75 %" needs to see.
    closer = closer_summary([0.5] * 8, [0.9] * 6 + [0.1] * 2)
    assert closer == {
        "adapted_closer_rate": 0.75,
        "adapted_closer_rate_ci95": pytest.approx([0.4093, 0.9285], abs=1e-4),
    }
    assert closer_summary([], []) == {"adapted_closer_rate": None, "adapted_closer_rate_ci95": None}
    assert wilson_interval(1.0, 8) == pytest.approx([0.6756, 1.0], abs=1e-4)  # never past 100 %
    assert (
        wilson_interval(0.5, 32)[1] - wilson_interval(0.5, 32)[0]
        < wilson_interval(0.5, 8)[1] - wilson_interval(0.5, 8)[0]
    )
    assert mean_interval([0.6, 0.7, 0.8, 0.9]) == pytest.approx([0.5446, 0.9554], abs=1e-4)  # t(3) = 3.182
    assert mean_interval([0.99, 1.0])[1] == 1.0  # clipped to the cosine's range
    assert mean_interval([0.7]) is None and mean_interval([0.7, float("nan")]) is None


def test_lexical_scores_offline() -> None:
    assert set(lexical.available()) == {"rougeL", "chrf", "bleu"}
    same = lexical.corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == {"rougeL": pytest.approx(1.0), "chrf": pytest.approx(1.0), "bleu": pytest.approx(1.0)}
    partial = lexical.per_example(["the cat sat", "dogs bark"], ["the cat sat on the mat", "the cat sat"])
    assert partial["rougeL"][0] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P = 3/3, R = 3/6
    assert partial["rougeL"][1] == 0.0 and partial["chrf"][0] > partial["chrf"][1]
