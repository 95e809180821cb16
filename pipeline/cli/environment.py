"""`pipeline env`: this machine's versions, hardware, speed levers, caches and offline state for a bug report."""

from __future__ import annotations

import typer


def env(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of text."),
) -> None:
    """Print versions, CPU/GPU, speed levers, caches and offline state to paste into a bug report."""
    import json

    from pipeline.planning.environment import collect, to_text
    from pipeline.train.manifest import redact

    report = collect()
    if as_json:
        typer.echo(redact(json.dumps(report, indent=2)))
    else:
        typer.echo("Paste this block into your bug report:\n")
        typer.echo(redact(to_text(report)))
