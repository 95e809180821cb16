"""`pipeline eval`: score a run, adapter or model against its base."""

from __future__ import annotations

import json

import typer


def evaluate(
    target: str = typer.Argument(..., help="Run folder, adapter folder or Hub id, or a merged/base model."),
    overrides: list[str] = typer.Argument(
        None, help="Dotted overrides such as eval.max_examples=16.", show_default=False
    ),
    recipe: str = typer.Option(
        None,
        "--recipe",
        help="Recipe whose eval split and eval settings to use (default: a run folder's own recipe).",
    ),
    data: str = typer.Option(None, "--data", help="JSONL file (or Hub data set) to evaluate on instead."),
    base: str = typer.Option(None, "--base", help="Model to compare against (default: the adapter's base)."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also evaluate the base and compare."),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Results folder (default: <run>/eval-<time>/ or runs/eval-<target>-<time>/).",
    ),
    fail_if_worse: bool = typer.Option(
        None,
        "--fail-if-worse/--no-fail-if-worse",
        show_default=False,
        help="Exit non-zero when worse than the base (default: eval.fail_if_worse).",
    ),
    safety: bool = typer.Option(
        False,
        "--safety",
        help="Also report refusal / over-refusal rates on the bundled "
        "safety prompts (same as eval.safety=true).",
    ),
    benchmarks: str = typer.Option(
        None,
        "--benchmarks",
        help="Comma-separated lm-eval tasks run on both models (eval.benchmarks), e.g. offline_mmlu,offline_bbh_mc; "
        "also measures general-text perplexity (eval.general_text).",
    ),
) -> None:
    """Perplexity, answer similarity, lexical overlap and speed of TARGET vs its base; writes a report."""
    from pipeline.evaluation.command import run_eval

    overrides = [*(overrides or []), *(["eval.safety=true"] if safety else [])]
    if benchmarks:
        tasks = ", ".join(json.dumps(t.strip()) for t in benchmarks.split(",") if t.strip())
        overrides += [f"eval.benchmarks=[{tasks}]", "eval.general_text=true"]
    run_eval(target, recipe, data, overrides, output, base, compare, fail_if_worse)
