"""Data-inspection commands: `pipeline data audit`, `pipeline data hygiene` and `pipeline tokens`."""

from __future__ import annotations

import typer
from rich.console import Console

from pipeline.cli.options import OVERRIDES_HELP


def _train_or_eval(value: str) -> str:
    if value not in ("train", "eval"):
        raise typer.BadParameter(f"'{value}' is not a split; use train or eval.")
    return value


data_app = typer.Typer(no_args_is_help=True, help="Inspect a recipe's data: formats, loss masks, lengths.")


@data_app.command("audit")
def data_audit(
    recipe: str = typer.Argument("lora-small", help="Recipe name (recipes/<name>.yaml) or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    examples: int = typer.Option(
        3, "--examples", "-n", min=0, help="Examples shown with trained tokens highlighted."
    ),
    split: str = typer.Option("train", callback=_train_or_eval, help="Split to audit: train or eval."),
    html: str = typer.Option(None, help="HTML file; default <train.output_dir>/<recipe>-data-audit.html."),
) -> None:
    """Show which tokens carry the loss and length statistics; fail on zero-trained or unstoppable turns."""
    from pathlib import Path

    from pipeline.config.loader import load_recipe
    from pipeline.data.audit import audit

    loaded = load_recipe(recipe, overrides or [])
    target = Path(html) if html else Path(loaded.train.output_dir) / f"{loaded.name}-data-audit.html"
    audit(loaded, examples, split, target, Console())


@data_app.command("hygiene")
def data_hygiene(
    target: str = typer.Argument("lora-small", help="Recipe name or path, or a data file/folder."),
    eval_file: str = typer.Option(
        None, "--eval", help="Eval data file checked for contamination (with a file)."
    ),
    output: str = typer.Option(
        None, "--output", "-o", help="JSON report; default <train.output_dir>/<name>-hygiene.json."
    ),
) -> None:
    """Exact/near duplicates, train/eval contamination, and personal data or secrets (masked) in the data."""
    from pathlib import Path

    from pipeline.data.hygiene_report import hygiene_report

    report = hygiene_report(target, eval_file, Path(output) if output else None)
    typer.echo("\n".join(report["lines"]))


def tokens(
    target: str = typer.Argument("lora-small", help="Recipe name or path, or a data file/folder."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    recipe: str = typer.Option(
        "lora-small", "--recipe", help="Recipe whose tokenizer and training settings apply to a data file."
    ),
    tokens_per_second: float = typer.Option(
        None, "--tokens-per-second", help="Training throughput to estimate with, instead of measuring it."
    ),
    warmup_steps: int = typer.Option(
        3,
        "--warmup-steps",
        help="Training steps run to measure throughput (the first is not timed); 0 skips the estimate.",
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for tokens.json and tokens.png; default <train.output_dir>/tokens-<name>/.",
    ),
) -> None:
    """Tokens per example (recipe tokenizer and tiktoken), share above max_length, and a training-time estimate."""
    from pathlib import Path

    from pipeline.planning.tokens import summary_lines, token_report

    report = token_report(
        target, Path(output) if output else None, tokens_per_second, warmup_steps, recipe, overrides or []
    )
    typer.echo("\n".join(summary_lines(report)))
