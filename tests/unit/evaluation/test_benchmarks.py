"""eval.benchmarks: the shipped offline tasks load and score a model in memory; a missing task or missing
data stops in one line before any model; base-vs-adapted deltas and lost answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.config.training import EvalSpec
from pipeline.errors import RecipeError
from pipeline.evaluation.benchmarks import SHIPPED, TASKS_DIR, compare_benchmarks, load_tasks, run_benchmarks
from tests.conftest import build_tiny_model


def test_shipped_tasks_have_data_licences_and_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert set(SHIPPED) == {"offline_mmlu", "offline_bbh_mc", "offline_bbh_gen"}
    assert "MIT" in (TASKS_DIR / "LICENSES.md").read_text()
    loaded = load_tasks(list(SHIPPED))
    assert set(loaded["tasks"]) == set(SHIPPED)
    rows = [json.loads(line) for line in (TASKS_DIR / "offline_mmlu.jsonl").read_text().splitlines()]
    assert len(rows) > 250 and all(len(r["choices"]) == 4 and 0 <= r["answer"] < 4 for r in rows)
    assert not any("python" in r["question"].lower() for r in rows[:50])


def test_unknown_task_is_one_line() -> None:
    with pytest.raises(RecipeError, match=r"unknown task 'no_such_task'.*offline_mmlu"):
        load_tasks(["no_such_task"])


def test_task_without_local_data_names_it_and_how_to_fetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(RecipeError) as error:
        load_tasks(["arc_easy"])
    message = str(error.value)
    assert "\n" not in message and "'arc_easy'" in message and "lm_eval --tasks arc_easy" in message


def test_tiny_model_scores_every_shipped_task(tiny_tokenizer: Any) -> None:
    model = build_tiny_model(len(tiny_tokenizer)).train()
    spec = EvalSpec(benchmarks=list(SHIPPED), benchmark_limit=3, batch_size=4)
    out = run_benchmarks(model, tiny_tokenizer, spec)
    assert model.training  # restored after lm-eval's wrapper switched it to eval mode
    assert out["tasks"]["offline_mmlu"]["main"] == "acc" and out["tasks"]["offline_mmlu"]["n"] == 3
    assert 0 <= out["tasks"]["offline_bbh_mc"]["acc"] <= 1
    assert out["tasks"]["offline_bbh_gen"]["main"] == "exact_match"
    assert [row["doc_id"] for row in out["per_example"]["offline_mmlu"]] == [0, 1, 2]
    assert all(isinstance(v, float) for v in out["tasks"]["offline_mmlu"].values() if v not in (3, "acc"))


def test_compare_counts_lost_and_gained_answers() -> None:
    def side(acc: float, correct: list[float]) -> dict[str, Any]:
        rows = [{"doc_id": i, "correct": c, "text": f"q{i}"} for i, c in enumerate(correct)]
        return {"tasks": {"t": {"acc": acc, "n": 4, "main": "acc"}}, "per_example": {"t": rows}}

    deltas, flips = compare_benchmarks(side(0.5, [1, 1, 0, 0]), side(0.25, [0, 1, 1, 0]))
    assert deltas == {"t.acc": -0.25}
    assert flips["t"]["lost"] == 1 and flips["t"]["gained"] == 1
    assert flips["t"]["lost_examples"] == [{"doc_id": 0, "text": "q0"}]
