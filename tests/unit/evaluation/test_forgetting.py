"""The forgetting checks of the gate (eval.gate), the comparison rows and the report section."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config.training import EvalSpec
from pipeline.errors import EvaluationGateError
from pipeline.evaluation.forgetting import checks, comparison_rows, section
from pipeline.evaluation.gate import check_gate, enforce_gate


def _side(ppl: float, acc: float) -> dict[str, Any]:
    return {
        "general_text": {"perplexity": ppl},
        "benchmarks": {"tasks": {"offline_mmlu": {"acc": acc, "acc_norm": acc, "n": 40, "main": "acc"}}},
    }


def test_checks_use_the_tolerances() -> None:
    spec = EvalSpec(gate={"general_perplexity_tolerance": 0.1, "benchmark_tolerance": 0.05})
    ok = checks({"base": _side(10.0, 0.5), "adapted": _side(10.9, 0.46)}, spec)
    assert [c["metric"] for c in ok] == ["general_perplexity", "offline_mmlu.acc"] and all(
        c["passed"] for c in ok
    )
    bad = checks({"base": _side(10.0, 0.5), "adapted": _side(11.1, 0.44)}, spec)
    assert [c["passed"] for c in bad] == [False, False]
    assert bad[0]["limit"] == pytest.approx(11.0) and bad[1]["limit"] == pytest.approx(0.45)
    nan = checks({"base": _side(10.0, 0.5), "adapted": _side(float("nan"), 0.5)}, spec)
    assert nan[0]["passed"] is False


def test_a_drop_within_chance_passes_a_significant_one_fails() -> None:
    from pipeline.evaluation.forgetting import sign_test

    assert sign_test(2, 0) == 0.25 and sign_test(0, 0) == 1.0 and sign_test(6, 0) == pytest.approx(1 / 64)

    def metrics(lost: int, gained: int) -> dict[str, Any]:
        flips = {"offline_mmlu": {"lost": lost, "gained": gained, "lost_examples": []}}
        after = 0.5 - (lost - gained) / 32
        return {
            "base": _side(10.0, 0.5),
            "adapted": _side(10.0, after),
            "comparison": {"forgetting": {"benchmark_answers_lost": flips}},
        }

    noise = checks(metrics(2, 0), EvalSpec())[1]  # 6 points down: past 0.05, but 2 of 2 changes is chance
    assert noise["passed"] and noise["p_value"] == 0.25 and noise["adapted"] < noise["limit"]
    forgot = checks(metrics(6, 0), EvalSpec())[1]
    assert not forgot["passed"] and forgot["p_value"] < 0.05


def test_forgetting_gate_enforced_alone() -> None:
    metrics = {"base": _side(10.0, 0.5), "adapted": _side(20.0, 0.5)}
    recorded = check_gate(metrics, EvalSpec())
    assert recorded["passed"] is False and recorded["forgetting"] == {"enabled": False, "passed": False}
    enforce_gate({**metrics, "gate": recorded}, "report.html")  # recorded only: no error
    gate = check_gate(metrics, EvalSpec(gate={"forgetting": True}))
    with pytest.raises(EvaluationGateError, match=r"general_perplexity 20 > limit 10\.5.*eval\.gate"):
        enforce_gate({**metrics, "gate": gate}, "report.html")


def test_gate_forgetting_needs_the_base() -> None:
    with pytest.raises(ValueError, match=r"gate\.forgetting compares with the base"):
        EvalSpec(base=False, gate={"forgetting": True})


def test_rows_and_report_section() -> None:
    rows = comparison_rows(_side(10.0, 0.5), _side(12.0, 0.25))
    assert [(r[0], r[1], r[2], r[3]) for r in rows][:2] == [
        ("general-text perplexity (not the training domain)", 10.0, 12.0, "lower"),
        ("benchmark offline_mmlu: acc", 0.5, 0.25, "higher"),
    ]
    forgetting = {
        "general_text_most_worse": [
            {"index": 3, "text": "A passage.", "base": 5.0, "adapted": 9.0, "ratio": 1.8}
        ],
        "benchmark_answers_lost": {
            "offline_mmlu": {
                "lost": 1,
                "gained": 0,
                "lost_examples": [{"doc_id": 7, "text": "Which planet?"}],
            }
        },
    }
    found = section({"comparison": {"forgetting": forgetting}})
    assert found is not None
    cells = [cell for block in found.blocks if hasattr(block, "rows") for row in block.rows for cell in row]
    assert "A passage." in cells and "x1.800" in cells and "Which planet?" in cells
    assert section({"comparison": {}}) is None
