"""Shipping commands: `merge` (a standalone model) and `push` (to the Hub)."""

from __future__ import annotations

import typer


def merge(
    run: str = typer.Argument(
        ..., help="Run folder (runs/<recipe>-<time>), adapter folder or Hub adapter id."
    ),
    output: str = typer.Option(None, "--output", "-o", help="Target folder; default RUN/merged."),
    dtype: str = typer.Option("auto", help="Saved dtype: auto (the recipe's), float32, bfloat16 or float16."),
    tolerance: float = typer.Option(
        None, help="Largest relative logit difference allowed vs base + adapter."
    ),
) -> None:
    """Fold the adapter into its base (QLoRA: a de-quantized base) and write a standalone, verified model."""
    from pathlib import Path

    from pipeline.models.merge import merge_run

    result = merge_run(run, Path(output) if output else None, dtype, tolerance)
    typer.echo(
        f"{result.output}: merged ({result.dtype}); max |logit diff| vs base + adapter {result.max_abs_diff:.2e} "
        f"(relative {result.relative_diff:.1e} <= {result.relative_tolerance:.0e}); reloads with identical "
        f"weights ({result.dtype} rounding moves logits by {result.reload_max_abs_diff:.1e}); {result.seconds:.1f} s"
    )


def push(
    run: str = typer.Argument(..., help="Run folder (runs/<recipe>-<time>) to push."),
    repo_id: str = typer.Option(..., "--repo-id", help="Target Hub repository, ORG/NAME."),
    private: bool = typer.Option(False, "--private/--public", help="Create the repository as private."),
    revision: str = typer.Option(None, "--revision", help="Branch to push to (created if missing)."),
    merged: bool = typer.Option(False, "--merged", help="Push the merged model (merging first if needed)."),
) -> None:
    """Push the adapter (or merged model) with its model card, metrics, manifest and recipe to the Hub."""
    from pipeline.hub.push import push_run

    result = push_run(run, repo_id, private=private, revision=revision, merged=merged)
    typer.echo(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")
