"""Two or more runs compared: loss curves by step, headline metrics with deltas against the first run and each
run's regression gate, the recipe keys whose values differ, and the evaluation answers side by side."""

from __future__ import annotations

import json
from typing import Any

from pipeline.runs.record import RunRecord

ANSWERS = "eval_examples.jsonl"
MAX_ANSWERS = 20
# Keys that differ between any two runs and say nothing about the recipe.
IGNORED = ("train.output_dir",)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys: {'train': {'max_steps': 2}} -> {'train.max_steps': 2}."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def recipe_differences(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Each dotted recipe key whose value differs between the runs, with every run's value (None: unset)."""
    flats = [flatten(r.recipe or {}) for r in records]
    keys = sorted({k for flat in flats for k in flat} - set(IGNORED))
    return [
        {"key": key, "values": [json.dumps(flat.get(key)) for flat in flats]}
        for key in keys
        if len({json.dumps(flat.get(key), sort_keys=True) for flat in flats}) > 1
    ]


def curves(record: RunRecord) -> dict[str, list[Any]]:
    """Steps with their training loss, and the held-out loss by step."""
    steps, loss, eval_steps, eval_loss = [], [], [], []
    for event in record.events:
        kind = getattr(event, "kind", "")
        if kind == "step" and getattr(event, "loss", None) is not None:
            steps.append(event.step)  # type: ignore[attr-defined]
            loss.append(event.loss)  # type: ignore[attr-defined]
        elif kind == "evaluation" and getattr(event, "phase", "") == "held_out":
            eval_steps.append(event.step)  # type: ignore[attr-defined]
            eval_loss.append(event.metrics.get("loss"))  # type: ignore[attr-defined]
    return {"steps": steps, "loss": loss, "eval_steps": eval_steps, "eval_loss": eval_loss}


def metric_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """Headline figures and the adapted-minus-base deltas of every run, with each run's delta to the first."""
    tables = []
    for record in records:
        figures: dict[str, Any] = {}
        if record.metrics is not None:
            figures.update(record.metrics.headline())
            if record.metrics.comparison is not None:
                figures.update({f"delta_{k}": v for k, v in record.metrics.comparison.deltas.items()})
        tables.append(figures)
    rows = []
    for key in sorted({k for table in tables for k in table}):
        values = [table.get(key) for table in tables]
        first = values[0]
        deltas = [
            v - first if isinstance(v, (int, float)) and isinstance(first, (int, float)) else None
            for v in values
        ]
        rows.append({"metric": key, "values": values, "deltas": deltas})
    return rows


def gates(records: list[RunRecord]) -> list[str]:
    """Each run's regression gate: passed, failed (with the failing checks) or not evaluated."""
    out = []
    for record in records:
        gate = (record.metrics.gate if record.metrics else None) or {}
        checks = gate.get("checks") or []
        if not checks:
            out.append("not evaluated")
            continue
        failed = [c.get("metric", "?") for c in checks if not c.get("passed")]
        out.append("passed" if not failed else f"failed: {', '.join(failed)}")
    return out


def answers(records: list[RunRecord]) -> list[dict[str, Any]]:
    """The first evaluation prompts with the reference, the base answer and each run's adapted answer."""
    tables = []
    for record in records:
        rows: dict[Any, dict[str, Any]] = {}
        path = record.folder / ANSWERS
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines()[:MAX_ANSWERS]:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                rows[row.get("prompt")] = row
        tables.append(rows)
    prompts = list(dict.fromkeys(p for table in tables for p in table))[:MAX_ANSWERS]
    return [
        {
            "prompt": prompt,
            "reference": next((t[prompt].get("reference") for t in tables if prompt in t), None),
            "base": next((t[prompt].get("base_answer") for t in tables if prompt in t), None),
            "answers": [t.get(prompt, {}).get("adapted_answer") for t in tables],
        }
        for prompt in prompts
    ]


def comparison(records: list[RunRecord]) -> dict[str, Any]:
    """Everything the compare page shows, JSON-ready."""
    return {
        "names": [r.folder.name for r in records],
        "curves": [curves(r) for r in records],
        "metrics": metric_rows(records),
        "gates": gates(records),
        "differences": recipe_differences(records),
        "answers": answers(records),
    }
