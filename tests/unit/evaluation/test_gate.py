"""The regression gate: tolerances, non-finite values, and one-line errors only when enforced."""

from __future__ import annotations

import pytest

from pipeline.config.schema import EvalSpec
from pipeline.errors import EvaluationGateError
from pipeline.evaluation.gate import check_gate, enforce_gate


def _metrics(base_ppl: float, adapted_ppl: float, base_sim: float = 0.5, adapted_sim: float = 0.5) -> dict:
    return {
        "base": {"perplexity": base_ppl, "similarity": {"mean": base_sim}},
        "adapted": {"perplexity": adapted_ppl, "similarity": {"mean": adapted_sim}},
    }


def _by_metric(gate: dict) -> dict:
    return {c["metric"]: c["passed"] for c in gate["checks"]}


def test_perplexity_tolerance_is_relative() -> None:
    spec = EvalSpec(fail_if_worse=True, perplexity_tolerance=0.1)
    assert check_gate(_metrics(10.0, 10.9), spec)["passed"] is True
    gate = check_gate(_metrics(10.0, 11.1), spec)
    assert gate["passed"] is False and _by_metric(gate)["perplexity"] is False
    assert gate["checks"][0]["limit"] == pytest.approx(11.0)


def test_similarity_tolerance_is_absolute() -> None:
    spec = EvalSpec(similarity_tolerance=0.05)
    assert _by_metric(check_gate(_metrics(10, 9, 0.60, 0.56), spec))["similarity_mean"] is True
    assert _by_metric(check_gate(_metrics(10, 9, 0.60, 0.54), spec))["similarity_mean"] is False


def test_diverged_model_fails_and_missing_similarity_is_not_checked() -> None:
    spec = EvalSpec(perplexity_tolerance=100.0)
    assert check_gate(_metrics(10.0, float("nan")), spec)["passed"] is False
    assert check_gate(_metrics(10.0, float("inf")), spec)["passed"] is False
    gate = check_gate({"base": {"perplexity": 10.0}, "adapted": {"perplexity": 9.0}}, spec)
    assert [c["metric"] for c in gate["checks"]] == ["perplexity"] and gate["passed"] is True


def test_enforce_raises_one_line_only_when_enabled() -> None:
    failing = _metrics(10.0, 20.0)
    failing["gate"] = check_gate(failing, EvalSpec(fail_if_worse=False))
    enforce_gate(failing, "runs/x/report.html")  # recorded, not enforced
    failing["gate"] = check_gate(failing, EvalSpec(fail_if_worse=True))
    with pytest.raises(EvaluationGateError) as info:
        enforce_gate(failing, "runs/x/report.html")
    message = str(info.value)
    assert "\n" not in message and "perplexity 20 > limit 10" in message and "runs/x/report.html" in message
    assert "eval.fail_if_worse: false" in message and info.value.exit_code == 6
    passing = _metrics(10.0, 9.0)
    passing["gate"] = check_gate(passing, EvalSpec(fail_if_worse=True))
    enforce_gate(passing, "runs/x/report.html")
