"""`pipeline studio`: the local web app over the same code the CLI runs."""

from __future__ import annotations

import os

import typer


def studio(
    host: str = typer.Option(
        "127.0.0.1", help="Interface to bind; anything but loopback needs PIPELINE_STUDIO_KEY set."
    ),
    port: int = typer.Option(7860, min=1, max=65535, help="TCP port."),
    runs: str = typer.Option(
        "runs", "--runs", help="Folder of run folders to show; new runs are written there."
    ),
) -> None:
    """Open the studio: recipes, data, live training, runs compared, chat and shipping, in a browser."""
    from pathlib import Path

    from pipeline.studio.app import serve
    from pipeline.studio.auth import KEY_ENV

    serve(host, port, Path(runs), os.environ.get(KEY_ENV) or None)
