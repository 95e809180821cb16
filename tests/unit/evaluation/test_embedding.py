"""Answer similarity with the packaged all-MiniLM-L6-v2, its summary, and the adapted-closer rate."""

from __future__ import annotations

import pytest

from pipeline.evaluation import lexical
from pipeline.evaluation.embedding import closer_rate, similarities, summarize

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_similarity_ranks_related_sentences_higher() -> None:
    scores = similarities(["eating bread", "carrying a baby", "eating food"], ["eating food"] * 3, MINILM)
    assert scores[2] == pytest.approx(1.0, abs=1e-5)
    assert 0.6 < scores[0] < 0.8
    assert scores[1] < 0.3 < scores[0]
    assert similarities([], [], MINILM) == []


def test_summary_and_closer_rate() -> None:
    summary = summarize([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 0.0])
    assert summary == {
        "mean": pytest.approx(0.5),
        "median": pytest.approx(0.5),
        "p10": pytest.approx(0.1),
        "n": 11,
    }
    assert summarize([])["mean"] is None
    assert closer_rate([0.5, 0.5, 0.5, 0.5], [0.9, 0.1, 0.5, 0.6]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert closer_rate([], []) is None


def test_lexical_scores_offline() -> None:
    assert set(lexical.available()) == {"rougeL", "chrf", "bleu"}
    same = lexical.corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert same == {"rougeL": pytest.approx(1.0), "chrf": pytest.approx(1.0), "bleu": pytest.approx(1.0)}
    partial = lexical.per_example(["the cat sat", "dogs bark"], ["the cat sat on the mat", "the cat sat"])
    assert partial["rougeL"][0] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P = 3/3, R = 3/6
    assert partial["rougeL"][1] == 0.0 and partial["chrf"][0] > partial["chrf"][1]
