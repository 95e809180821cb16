"""What fine-tuning cost outside the training domain: general-text perplexity and benchmarks, base vs adapted.

The rows of the comparison table, the comparison's `forgetting` section (the passages and questions that
got most worse), the forgetting checks of the gate (eval.gate) and the report's section on them.
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.config.schema import EvalSpec
from pipeline.evaluation.benchmarks import compare_benchmarks
from pipeline.evaluation.document import Section, Table
from pipeline.evaluation.general_text import most_worse

GENERAL = "general-text perplexity (not the training domain)"
# A benchmark's drop past the tolerance fails only when the questions lost outnumber those gained beyond chance
# (sign test, one-sided): with a few dozen questions, two lost and none gained (p = 0.25) is noise.
SIGNIFICANCE = 0.05


def benchmark_label(task: str, metric: str) -> str:
    """The table's name of one benchmark score."""
    return f"benchmark {task}: {metric}"


def comparison_rows(base: dict[str, Any], adapted: dict[str, Any]) -> list[tuple[str, Any, Any, str, tuple]]:
    """(name, base, adapted, better, path) of general-text perplexity and every benchmark score."""
    rows: list[tuple[str, Any, Any, str, tuple]] = []
    general = ("general_text", "perplexity")
    if (base.get("general_text") or adapted.get("general_text")) is not None:
        rows.append((GENERAL, *(_pick(s, general) for s in (base, adapted)), "lower", general))
    tasks = {**base.get("benchmarks", {}).get("tasks", {}), **adapted.get("benchmarks", {}).get("tasks", {})}
    for task, scores in tasks.items():
        for metric in scores:
            if metric in ("n", "main"):
                continue
            path = ("benchmarks", "tasks", task, metric)
            rows.append(
                (benchmark_label(task, metric), _pick(base, path), _pick(adapted, path), "higher", path)
            )
    return rows


def _pick(side: dict[str, Any], path: tuple) -> float | None:
    value: Any = side
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def compare(base: dict[str, Any], adapted: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """(deltas, forgetting): adapted - base of general perplexity and each benchmark score; the passages
    whose perplexity rose most and the benchmark questions the base got right and the adapted model missed."""
    deltas: dict[str, float | None] = {}
    forgetting: dict[str, Any] = {}
    if base.get("general_text") and adapted.get("general_text"):
        b, a = base["general_text"].get("perplexity"), adapted["general_text"].get("perplexity")
        deltas["general_perplexity"] = a - b if b is not None and a is not None else None
        forgetting["general_text_most_worse"] = most_worse(base["general_text"], adapted["general_text"])
    if base.get("benchmarks") and adapted.get("benchmarks"):
        bench_deltas, flips = compare_benchmarks(base["benchmarks"], adapted["benchmarks"])
        deltas.update(bench_deltas)
        forgetting["benchmark_answers_lost"] = flips
    return deltas, forgetting


def checks(metrics: dict[str, Any], spec: EvalSpec) -> list[dict[str, Any]]:
    """The forgetting checks: general perplexity above base x (1 + tolerance); a benchmark's main score below
    base - tolerance, when the per-question changes make the drop significant (`p_value`, SIGNIFICANCE); a
    non-finite adapted value fails."""
    base, adapted = metrics.get("base", {}), metrics.get("adapted", {})
    out = []
    b, a = _pick(base, ("general_text", "perplexity")), _pick(adapted, ("general_text", "perplexity"))
    if b is not None and math.isfinite(b):
        limit = b * (1 + spec.gate.general_perplexity_tolerance)
        ok = a is not None and math.isfinite(a) and a <= limit
        out.append(_check("general_perplexity", b, a, limit, "lower", ok))
    flips = ((metrics.get("comparison") or {}).get("forgetting") or {}).get("benchmark_answers_lost", {})
    for task, scores in adapted.get("benchmarks", {}).get("tasks", {}).items():
        main = scores.get("main")
        before = _pick(base, ("benchmarks", "tasks", task, main)) if main else None
        if before is None:
            continue
        value = _pick(adapted, ("benchmarks", "tasks", task, main))
        limit = before - spec.gate.benchmark_tolerance
        # 1e-9: a drop of exactly the tolerance (k questions of N) passes despite rounding (0.325 - 0.05)
        ok = value is not None and math.isfinite(value) and value >= limit - 1e-9
        p = sign_test(flips[task]["lost"], flips[task]["gained"]) if task in flips else None
        check = _check(
            f"{task}.{main}", before, value, limit, "higher", ok or (p is not None and p >= SIGNIFICANCE)
        )
        out.append({**check, "p_value": p} if p is not None else check)
    return out


def sign_test(lost: int, gained: int) -> float:
    """One-sided exact sign test on the questions that changed: the chance of at least `lost` losses among
    lost + gained changes if losing and gaining were equally likely (1.0 when none changed)."""
    changed = lost + gained
    return sum(math.comb(changed, k) for k in range(lost, changed + 1)) / 2**changed if changed else 1.0


def _check(
    metric: str, base: float, adapted: float | None, limit: float, better: str, ok: bool
) -> dict[str, Any]:
    return {
        "metric": metric,
        "base": base,
        "adapted": adapted,
        "limit": limit,
        "better": better,
        "passed": ok,
        "kind": "forgetting",
    }


def section(metrics: dict[str, Any]) -> Section | None:
    """The report's list of what got most worse outside the training domain; None when nothing was measured."""
    forgetting = (metrics.get("comparison") or {}).get("forgetting")
    if not forgetting:
        return None
    blocks: list[Any] = []
    worst = forgetting.get("general_text_most_worse")
    if worst is not None:
        rows = [[w["text"], f"{w['base']:.4g}", f"{w['adapted']:.4g}", f"x{w['ratio']:.3f}"] for w in worst]
        blocks.append("General-text passages whose perplexity rose most (none listed: none rose):")
        blocks.append(Table(["passage", "base", "adapted", "ratio"], rows))
    lost = forgetting.get("benchmark_answers_lost")
    if lost:
        counts = [[task, str(f["lost"]), str(f["gained"])] for task, f in lost.items()]
        blocks.append(
            "Benchmark questions the base answered right and the adapted model missed (lost), and back:"
        )
        blocks.append(Table(["task", "lost", "gained"], counts))
        missed = [[task, str(e["doc_id"]), e["text"]] for task, f in lost.items() for e in f["lost_examples"]]
        if missed:
            blocks.append(Table(["task", "doc", "question lost (first 10 per task)"], missed))
    return Section("Forgetting: outside the training domain", blocks)
