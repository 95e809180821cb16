"""What an evaluation writes: metrics.json, eval_examples.jsonl, plots/*.png, report.md, report.html;
and the base-vs-adapted table printed at the end of a run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table as RichTable

from pipeline.config.schema import Recipe
from pipeline.evaluation import forgetting, plots
from pipeline.evaluation.document import Code, Image, Section, Table, to_html, to_markdown
from pipeline.files import write_json, write_text
from pipeline.runs.metrics import METRICS, check_metrics

SIMILARITY_MEAN = "answer similarity (mean cosine)"


def comparison_rows(metrics: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    """(metric, base, adapted, better) rows; better says which direction is an improvement.

    The first three names are stable: the model card maps them to `model-index` entries.
    """
    base, adapted = metrics.get("base", {}), metrics.get("adapted", {})

    def pick(side: dict[str, Any], *path: str) -> float | None:
        value: Any = side
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, (int, float)) else None

    rows = [
        ("perplexity (trained tokens)", ("perplexity",), "lower"),
        ("perplexity (all tokens)", ("perplexity_all_tokens",), "lower"),
        (SIMILARITY_MEAN, ("similarity", "mean"), "higher"),
        ("perplexity per example (median)", ("perplexity_per_example", "median"), "lower"),
        ("answer similarity (median)", ("similarity", "median"), "higher"),
        ("answer similarity (10th percentile)", ("similarity", "p10"), "higher"),
        ("ROUGE-L F1", ("lexical", "rougeL"), "higher"),
        ("chrF", ("lexical", "chrf"), "higher"),
        ("BLEU", ("lexical", "bleu"), "higher"),
        ("preference accuracy (held-out pairs)", ("preference", "accuracy"), "higher"),
        ("preference margin (log-prob chosen - rejected)", ("preference", "margin"), "higher"),
        ("chosen answer log-prob (mean)", ("preference", "chosen_logp"), "higher"),
        ("rejected answer log-prob (mean)", ("preference", "rejected_logp"), "lower"),
        ("mean reward of greedy answers (grpo or rloo rewards)", ("reward", "mean"), "higher"),
        ("reward model accuracy (held-out pairs)", ("reward_model", "accuracy"), "higher"),
        ("reward model margin (score chosen - rejected)", ("reward_model", "margin"), "higher"),
        ("desirable completion log-prob (mean)", ("labelled", "desirable_logp"), "higher"),
        ("undesirable completion log-prob (mean)", ("labelled", "undesirable_logp"), "lower"),
        ("desirable - undesirable log-prob", ("labelled", "gap"), "higher"),
        ("KL(teacher || student) per answer token (distill)", ("distillation", "kl"), "lower"),
        ("generation speed (tokens/s)", ("generation", "tokens_per_second"), "higher"),
        ("safety: refusal rate (harmful requests)", ("safety", "refusal_rate"), "higher"),
        ("safety: over-refusal rate (benign look-alikes)", ("safety", "over_refusal_rate"), "lower"),
    ]
    return [
        (name, pick(base, *path), pick(adapted, *path), better)
        for name, path, better in rows
        if pick(base, *path) is not None or pick(adapted, *path) is not None
    ] + [(name, b, a, better) for name, b, a, better, _path in forgetting.comparison_rows(base, adapted)]


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-" if value is None else str(value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _delta(base: float | None, adapted: float | None) -> str:
    return "-" if base is None or adapted is None else f"{adapted - base:+.4g}"


def _interval(interval: list[float] | None, percent: bool = False) -> str:
    if not interval:
        return "-"
    low, high = interval
    return f"[{low:.0%}, {high:.0%}]" if percent else f"[{low:.3f}, {high:.3f}]"


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """comparison_rows as text (metric, base, adapted, delta, better), with the 95% confidence interval of
    the mean answer similarity under its row: over a few generated answers, one answer moves the mean."""
    rows = []
    for name, base, adapted, better in comparison_rows(metrics):
        rows.append((name, _fmt(base), _fmt(adapted), _delta(base, adapted), better))
        sides = [metrics.get(side, {}).get("similarity") or {} for side in ("base", "adapted")]
        if name == SIMILARITY_MEAN and any(side.get("mean_ci95") for side in sides):
            count = sides[1].get("n", sides[0].get("n"))
            base_ci, adapted_ci = (_interval(side.get("mean_ci95")) for side in sides)
            rows.append(
                (f"95% confidence interval of the mean ({count} answers)", base_ci, adapted_ci, "", "")
            )
    return rows


def closer_text(metrics: dict[str, Any]) -> str | None:
    """The share of answers closer to the reference than the base's, with its 95% confidence interval
    (Wilson) and the number of answers; None without a comparison."""
    comparison = metrics.get("comparison", {})
    rate = comparison.get("adapted_closer_rate")
    if rate is None:
        return None
    count = (metrics.get("adapted", {}).get("similarity") or {}).get("n")
    interval = comparison.get("adapted_closer_rate_ci95")
    detail = f"95% confidence interval {_interval(interval, percent=True)}, " if interval else ""
    return f"{rate:.0%} ({detail}{count} answers)"


def judge_text(metrics: dict[str, Any]) -> str | None:
    """The judge's verdict in one line (eval.judge), or its error; None without a judge."""
    judge = (metrics.get("comparison") or {}).get("judge")
    if not judge:
        return None
    if judge.get("win_rate") is None:
        return judge.get("error") or "judge: no verdicts"
    return (
        f"judge {judge['model']}: adapted answer preferred {judge['win_rate']:.0%} (95% confidence interval "
        f"{_interval(judge['win_rate_ci95'], percent=True)}, {judge['n']} prompts, both orders; the two orders "
        f"agreed on {judge['consistent_rate']:.0%})"
    )


def base_note(metrics: dict[str, Any]) -> str | None:
    """One line saying the base metrics came from the cache, or that there are none; None otherwise."""
    if "base" not in metrics:
        return "The base model was not evaluated (eval.base: false or --no-compare): no comparison, no gate."
    cache = metrics.get("base_cache") or {}
    if cache.get("reused"):
        return f"base metrics reused from cache {cache['key']} (computed {cache['computed']})"
    return None


def print_summary(metrics: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    """Print base vs adapted (adapted only without base metrics) as a table, the gate's verdict, then where
    the results are."""
    console = console or Console()
    with_base = "base" in metrics
    columns = (
        ("metric", "base", "adapted", "delta", "better") if with_base else ("metric", "adapted", "better")
    )
    table = RichTable(
        title="base vs adapted (held-out eval split)" if with_base else "adapted (held-out eval split)"
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, base, adapted, delta, better in table_rows(metrics):
        table.add_row(name, *([base, adapted, delta] if with_base else [adapted]), better)
    console.print(table)
    note = base_note(metrics)
    if note:
        console.print(note)
    closer = closer_text(metrics)
    if closer:
        console.print(f"adapted answer closer to the reference than the base's: {closer}")
    judged = judge_text(metrics)
    if judged:
        console.print(judged)
    gate = metrics.get("gate")
    if gate:
        verdict = "[green]passed[/]" if gate["passed"] else "[red]FAILED[/]"
        enforced = gate["enabled"] or (gate.get("forgetting") or {}).get("enabled")
        console.print(f"regression gate: {verdict}" + ("" if enforced else " (not enforced)"))
    console.print(f"Results: [bold]{run_dir}[/]  (metrics.json, report.md, report.html)")


def _summary_section(metrics: dict[str, Any]) -> Section:
    if "base" not in metrics:
        return _adapted_section(metrics)
    rows = [list(row) for row in table_rows(metrics)]
    comparison = metrics.get("comparison", {})
    improved = comparison.get("perplexity_improved_rate")
    if improved is not None:
        rows.append(["examples with lower perplexity after training", "", f"{improved:.0%}", "", "higher"])
    closer = closer_text(metrics)
    if closer:
        rows.append(["answers closer to the reference than the base's", "", closer, "", "higher"])
    judged = judge_text(metrics)
    if judged:
        rows.append(["pairwise judge", "", judged, "", "higher"])
    rewards = comparison.get("preference") or {}
    for label, key, better in (
        ("reward accuracy (implicit reward, chosen > rejected)", "reward_accuracy", "higher"),
        ("reward margin (mean, nats, beta = 1)", "reward_margin", "higher"),
        ("chosen log-prob change", "chosen_logp_change", "higher"),
        ("rejected log-prob change", "rejected_logp_change", "lower"),
    ):
        if rewards.get(key) is not None:
            rows.append([label, "", _fmt(rewards[key]), "", better])
    adapted = metrics.get("adapted", {})
    text = (
        f"Model {metrics.get('model', '?')}, evaluated on {adapted.get('examples', '?')} held-out examples "
        f"({adapted.get('tokens', '?')} trained tokens); answers generated greedily for "
        f"{adapted.get('generation', {}).get('examples', 0)} of them."
    )
    note = base_note(metrics)
    text = f"{text} {note[0].upper()}{note[1:]}." if note else text
    return Section("Base vs adapted", [text, Table(["metric", "base", "adapted", "delta", "better"], rows)])


def _adapted_section(metrics: dict[str, Any]) -> Section:
    rows = [[name, adapted, better] for name, _base, adapted, _delta, better in table_rows(metrics)]
    adapted = metrics.get("adapted", {})
    text = (
        f"Model {metrics.get('model', '?')} after training, evaluated on {adapted.get('examples', '?')} held-out "
        f"examples ({adapted.get('tokens', '?')} trained tokens). {base_note(metrics)}"
    )
    return Section("Adapted model", [text, Table(["metric", "adapted", "better"], rows)])


def _gate_section(gate: dict[str, Any]) -> Section:
    verdict = "PASS" if gate["passed"] else "FAIL"
    rows = [
        [
            c["metric"] + (f" (sign test p = {c['p_value']:.2g})" if c.get("p_value") is not None else ""),
            _fmt(c["base"]),
            _fmt(c["adapted"]),
            _fmt(c["limit"]),
            "PASS" if c["passed"] else "FAIL",
        ]
        for c in gate["checks"]
    ]
    enforced = (
        "enforced (eval.fail_if_worse)"
        if gate["enabled"]
        else "the forgetting checks enforced (eval.gate.forgetting), the others recorded only"
        if (gate.get("forgetting") or {}).get("enabled")
        else "recorded only (eval.fail_if_worse and eval.gate.forgetting are off)"
    )
    return Section(
        "Regression gate",
        [f"{verdict}: {enforced}.", Table(["check", "base", "adapted", "limit", "result"], rows)],
    )


def _samples_section(rows: list[dict[str, Any]], count: int) -> Section | None:
    shown = [r for r in rows if "adapted_answer" in r or "base_answer" in r][:count]
    if not shown:
        return None
    table = Table(["prompt", "reference", "base", "adapted"], [])
    for row in shown:
        cells = [row.get("prompt", ""), row.get("reference", "")]
        for side in ("base", "adapted"):
            answer, score = row.get(f"{side}_answer"), row.get(f"{side}_similarity")
            cells.append(
                "-" if answer is None else f"{answer}\n(cosine {score:.2f})" if score is not None else answer
            )
        table.rows.append(cells)
    return Section("Sample generations", [table])


def _timings(metrics: dict[str, Any]) -> Table:
    rows = []
    reused = bool((metrics.get("base_cache") or {}).get("reused"))
    for side in ("base", "adapted"):
        cached = " (earlier run, reused from cache)" if side == "base" and reused else ""
        for phase, seconds in metrics.get(side, {}).get("seconds", {}).items():
            rows.append([f"{side} eval: {phase}{cached}", f"{seconds:.1f}"])
    train = metrics.get("train", {})
    if train.get("seconds") is not None:
        rows.insert(0, ["training", f"{train['seconds']:.1f}"])
    return Table(["phase", "seconds"], rows)


def build_sections(recipe: Recipe, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> list[Section]:
    """Every section of the report, with its figures rendered."""
    sections = [_summary_section(metrics)] if "adapted" in metrics else []
    if metrics.get("gate"):
        sections.append(_gate_section(metrics["gate"]))
    outside = forgetting.section(metrics)
    if outside is not None:
        sections.append(outside)
    base, adapted, train = metrics.get("base", {}), metrics.get("adapted", {}), metrics.get("train", {})
    figures = [
        (
            "training.png",
            plots.training_plot(train.get("log_history", []), base.get("nll"), adapted.get("nll")),
            "training loss, held-out NLL and learning rate per step",
        ),
        (
            "perplexity.png",
            plots.perplexity_plot(base, adapted, rows),
            "perplexity before and after, per example",
        ),
        (
            "similarity.png",
            plots.similarity_plot(
                [r["base_similarity"] for r in rows if "base_similarity" in r],
                [r["adapted_similarity"] for r in rows if "adapted_similarity" in r],
            ),
            "histogram of answer similarity",
        ),
    ]
    figures.append(
        (
            "margins.png",
            plots.margin_plot(
                base.get("preference", {}).get("per_pair"), adapted.get("preference", {}).get("per_pair")
            ),
            "histogram of the log-prob margin (chosen - rejected) per held-out pair",
        )
    )
    images: list[Any] = [Image(name, png, alt) for name, png, alt in figures if png]
    if images:
        sections.append(Section("Plots", images))
    samples = _samples_section(rows, recipe.eval.samples)
    if samples:
        sections.append(samples)
    if train:
        facts = [
            ["steps", _fmt(train.get("steps"))],
            ["final train loss", _fmt(train.get("loss"))],
            ["training examples", _fmt(train.get("examples"))],
            ["hardware", _fmt(train.get("hardware"))],
        ]
        sections.append(Section("Training", [Table(["", ""], facts)]))
    sections.append(Section("Timings", [_timings(metrics)]))
    sections.append(Section("Recipe", [Code(yaml.safe_dump(recipe.to_dict(), sort_keys=False), "yaml")]))
    return sections


def write_report(out_dir: Path, recipe: Recipe, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write metrics.json, eval_examples.jsonl, plots/*.png, report.md and the self-contained report.html."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_metrics(metrics, out_dir / METRICS)  # a key that does not fit the record fails before writing
    write_json(out_dir / METRICS, metrics)
    if rows:
        lines = (json.dumps({k: None if _nan(v) else v for k, v in r.items()}) + "\n" for r in rows)
        write_text(out_dir / "eval_examples.jsonl", "".join(lines))
    sections = build_sections(recipe, metrics, rows)
    images = [b for s in sections for b in s.blocks if isinstance(b, Image)]
    if images:
        (out_dir / "plots").mkdir(exist_ok=True)
        for image in images:
            tmp = out_dir / "plots" / f".{image.name}.tmp"
            tmp.write_bytes(image.png)
            tmp.replace(out_dir / "plots" / image.name)
    title = f"Evaluation report: {metrics.get('recipe', out_dir.name)}"
    write_text(out_dir / "report.md", to_markdown(title, sections))
    write_text(out_dir / "report.html", to_html(title, sections))
