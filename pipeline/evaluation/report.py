"""metrics.json, report.md and the end-of-run table comparing base and adapted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.export import write_json, write_text


def comparison_rows(metrics: dict[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    """(metric, base, adapted, better) rows; better says which direction is an improvement."""
    base, adapted = metrics.get("base", {}), metrics.get("adapted", {})
    return [
        ("perplexity (trained tokens)", base.get("perplexity"), adapted.get("perplexity"), "lower"),
        ("perplexity (all tokens)", base.get("perplexity_all_tokens"), adapted.get("perplexity_all_tokens"), "lower"),
        ("answer similarity (mean cosine)", base.get("similarity", {}).get("mean"),
         adapted.get("similarity", {}).get("mean"), "higher"),
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def print_summary(metrics: dict[str, Any], run_dir: Path, console: Console | None = None) -> None:
    """Print base vs adapted as a table, then where the results are."""
    console = console or Console()
    table = Table(title="base vs adapted (held-out eval split)")
    for column in ("metric", "base", "adapted", "delta"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, base, adapted, _better in comparison_rows(metrics):
        delta = None if base is None or adapted is None else adapted - base
        table.add_row(name, _fmt(base), _fmt(adapted), "-" if delta is None else f"{delta:+.4g}")
    console.print(table)
    console.print(f"Run folder: [bold]{run_dir}[/]  (adapter/, metrics.json, report.md, README.md)")


def write_report(run_dir: Path, metrics: dict[str, Any], samples: list[dict[str, str]]) -> None:
    """Write metrics.json and a Markdown report with the comparison table and sample generations."""
    write_json(run_dir / "metrics.json", metrics)
    lines = [f"# Run report: {metrics.get('recipe', run_dir.name)}", "", "| metric | base | adapted | better |",
             "|---|---|---|---|"]
    for name, base, adapted, better in comparison_rows(metrics):
        lines.append(f"| {name} | {_fmt(base)} | {_fmt(adapted)} | {better} |")
    train = metrics.get("train", {})
    lines += ["", "## Training", "", f"- steps: {train.get('steps')}", f"- final train loss: {_fmt(train.get('loss'))}",
              f"- train time: {_fmt(train.get('seconds'))} s", f"- examples: {train.get('examples')}", ""]
    if samples:
        lines += ["## Sample generations", ""]
        for sample in samples:
            lines += [f"**Prompt:** {sample['prompt']}", "", f"- reference: {sample['reference']}",
                      f"- base: {sample['base']}", f"- adapted: {sample['adapted']}", ""]
    write_text(run_dir / "report.md", "\n".join(lines) + "\n")
