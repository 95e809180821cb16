"""Lexical overlap of answers with references: ROUGE-L (rouge-score), chrF and BLEU (sacrebleu).

Both libraries compute locally; nothing is fetched (unlike `evaluate.load`, which downloads metric
scripts from the Hub). A metric whose library is not installed is left out, not faked.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def available() -> list[str]:
    """Names of the lexical metrics whose library is installed."""
    names = []
    if importlib.util.find_spec("rouge_score") is not None:
        names.append("rougeL")
    if importlib.util.find_spec("sacrebleu") is not None:
        names += ["chrf", "bleu"]
    return names


def per_example(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """Sentence-level scores in [0, 1] per metric: ROUGE-L F1, chrF / 100."""
    scores: dict[str, list[float]] = {}
    names = available()
    if "rougeL" in names:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        pairs = zip(predictions, references, strict=True)
        scores["rougeL"] = [scorer.score(r, p)["rougeL"].fmeasure for p, r in pairs]
    if "chrf" in names:
        import sacrebleu

        scores["chrf"] = [
            sacrebleu.sentence_chrf(p, [r]).score / 100 for p, r in zip(predictions, references, strict=False)
        ]
    return scores


def corpus_scores(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus-level scores in [0, 1]: mean ROUGE-L F1, corpus chrF and BLEU (sacrebleu's defaults) / 100."""
    if not predictions:
        return {}
    result: dict[str, Any] = {}
    sentence = per_example(predictions, references)
    if "rougeL" in sentence:
        result["rougeL"] = sum(sentence["rougeL"]) / len(predictions)
    if "chrf" in available():
        import sacrebleu

        result["chrf"] = sacrebleu.corpus_chrf(predictions, [references]).score / 100
        result["bleu"] = sacrebleu.corpus_bleu(predictions, [references]).score / 100
    return result
