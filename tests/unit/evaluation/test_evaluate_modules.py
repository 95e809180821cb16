"""Our metrics as local `evaluate` modules: evaluate.load(path) opens them offline and they give the numbers
of the functions the pipeline used before them."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.evaluation.evaluate_modules import MODULES_DIR
from pipeline.evaluation.perplexity import perplexity
from tests.conftest import build_tiny_model


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_trained_token_perplexity_module_matches_the_function(tiny_tokenizer: Any) -> None:
    import evaluate

    model = build_tiny_model(len(tiny_tokenizer), seed=2)
    rows = [
        {"input_ids": [5, 6, 7, 8, 9, 10], "assistant_masks": [0, 0, 0, 1, 1, 1]},
        {"input_ids": [11, 12, 13, 14], "assistant_masks": [0, 1, 1, 1]},
    ]
    metric = evaluate.load(str(MODULES_DIR / "trained_token_perplexity"))
    out = metric.compute(
        input_ids=[r["input_ids"] for r in rows],
        assistant_masks=[r["assistant_masks"] for r in rows],
        model=model,
    )
    direct = perplexity(model, rows)
    assert out["tokens"] == 6 and math.isclose(out["perplexity"], direct["perplexity"], rel_tol=1e-9)
    assert out["per_example"] == pytest.approx(direct["per_example"])
    with pytest.raises(ValueError, match="needs model="):
        metric.compute(input_ids=[[1, 2]], assistant_masks=[[0, 1]])


def test_answer_similarity_module_offline() -> None:
    import evaluate

    metric = evaluate.load(str(MODULES_DIR / "answer_similarity"))
    out = metric.compute(
        predictions=["eating bread", "carrying a baby"], references=["eating food", "eating food"]
    )
    assert out["n"] == 2 and 0.6 < out["scores"][0] < 0.8 and out["scores"][1] < out["scores"][0] - 0.4
    assert out["mean"] == pytest.approx(sum(out["scores"]) / 2)
