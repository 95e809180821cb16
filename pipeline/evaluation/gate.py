"""The regression gate: is the adapted model worse than the base beyond the recipe's tolerances?

Checked on every evaluation and recorded in metrics.json; it stops the run (EvaluationGateError, a
non-zero exit) only with eval.fail_if_worse (every check) or eval.gate.forgetting (the checks outside the
training domain: pipeline.evaluation.forgetting), after every file of the run folder has been written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.config.schema import EvalSpec
from pipeline.errors import EvaluationGateError
from pipeline.evaluation.forgetting import checks as forgetting_checks


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def check_gate(metrics: dict[str, Any], spec: EvalSpec) -> dict[str, Any]:
    """{'enabled', 'passed', 'checks': [{metric, base, adapted, limit, passed}]} for base vs adapted.

    Perplexity fails above base * (1 + perplexity_tolerance); mean similarity fails below
    base - similarity_tolerance; preference accuracy on held-out pairs below base - preference_tolerance. A non-finite adapted value (a diverged model) always fails.
    """
    base, adapted = metrics.get("base", {}), metrics.get("adapted", {})
    checks = []
    ppl_base, ppl_adapted = _number(base.get("perplexity")), _number(adapted.get("perplexity"))
    if ppl_base is not None and math.isfinite(ppl_base):
        limit = ppl_base * (1 + spec.perplexity_tolerance)
        ok = ppl_adapted is not None and math.isfinite(ppl_adapted) and ppl_adapted <= limit
        checks.append(
            {
                "metric": "perplexity",
                "base": ppl_base,
                "adapted": ppl_adapted,
                "limit": limit,
                "better": "lower",
                "passed": ok,
            }
        )
    sim_base = _number(base.get("similarity", {}).get("mean"))
    sim_adapted = _number(adapted.get("similarity", {}).get("mean"))
    if sim_base is not None:
        limit = sim_base - spec.similarity_tolerance
        ok = sim_adapted is not None and math.isfinite(sim_adapted) and sim_adapted >= limit
        checks.append(
            {
                "metric": "similarity_mean",
                "base": sim_base,
                "adapted": sim_adapted,
                "limit": limit,
                "better": "higher",
                "passed": ok,
            }
        )
    acc_base = _number(base.get("preference", {}).get("accuracy"))
    acc_adapted = _number(adapted.get("preference", {}).get("accuracy"))
    if acc_base is not None:
        limit = acc_base - spec.preference_tolerance
        checks.append(
            {
                "metric": "preference_accuracy",
                "base": acc_base,
                "adapted": acc_adapted,
                "limit": limit,
                "better": "higher",
                "passed": acc_adapted is not None and acc_adapted >= limit,
            }
        )
    from pipeline.evaluation.safety import safety_checks

    checks += safety_checks(base.get("safety"), adapted.get("safety"), spec.safety_tolerance)
    outside = forgetting_checks(metrics, spec)
    return {
        "enabled": spec.fail_if_worse,
        "passed": all(c["passed"] for c in checks + outside),
        "checks": checks + outside,
        "forgetting": {
            "enabled": spec.fail_if_worse or spec.gate.forgetting,
            "passed": all(c["passed"] for c in outside),
        },
    }


def gate_message(gate: dict[str, Any], where: Path | str) -> str:
    """One line naming each failed check, where the report is, and how to relax or disable the gate."""
    failed = []
    for check in gate.get("checks", []):
        if not check["passed"]:
            relation = ">" if check["better"] == "lower" else "<"
            failed.append(
                f"{check['metric']} {check['adapted']:.4g} {relation} limit {check['limit']:.4g} "
                f"(base {check['base']:.4g})"
                if check["adapted"] is not None
                else f"{check['metric']} is missing or not finite (base {check['base']:.4g})"
            )
    return (
        f"evaluation gate: the adapted model is worse than the base: {'; '.join(failed)}. "
        f"Report: {where}. Fix the training settings (e.g. train.learning_rate), raise "
        "eval.perplexity_tolerance / eval.similarity_tolerance / eval.preference_tolerance / "
        "eval.gate.general_perplexity_tolerance / eval.gate.benchmark_tolerance, or set eval.fail_if_worse: false "
        "and eval.gate.forgetting: false."
    )


def enforce_gate(metrics: dict[str, Any], where: Path | str) -> None:
    """Raise EvaluationGateError when the gate is enabled and failed (metrics['gate'] from check_gate)."""
    gate = metrics.get("gate")
    if not gate:
        return
    if gate.get("enabled") and not gate.get("passed"):
        raise EvaluationGateError(gate_message(gate, where))
    forgetting = gate.get("forgetting") or {}
    if forgetting.get("enabled") and not forgetting.get("passed"):
        only = {**gate, "checks": [c for c in gate["checks"] if c.get("kind") == "forgetting"]}
        raise EvaluationGateError(gate_message(only, where))
