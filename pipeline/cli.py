"""The `pipeline` command line: heavy imports happen inside commands so `--help` stays instant."""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.console import Console

from pipeline.errors import PipelineError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune causal language models with LoRA/QLoRA/DoRA or full fine-tuning, then evaluate and ship them.",
)

OVERRIDES_HELP = "Dotted overrides such as train.max_steps=2 adapter.r=8."

data_app = typer.Typer(no_args_is_help=True, help="Inspect a recipe's data: formats, loss masks, lengths.")
app.add_typer(data_app, name="data")


@data_app.command("audit")
def data_audit(
    recipe: str = typer.Argument("lora-small", help="Recipe name (recipes/<name>.yaml) or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    examples: int = typer.Option(3, "--examples", "-n", help="Examples shown with trained tokens highlighted."),
    split: str = typer.Option("train", help="Split to audit: train or eval."),
    html: str = typer.Option(None, help="HTML file; default <train.output_dir>/<recipe>-data-audit.html."),
) -> None:
    """Show which tokens carry the loss and length statistics; fail on zero-trained or unstoppable turns."""
    from pathlib import Path

    from pipeline.audit import audit
    from pipeline.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [], check=False)
    target = Path(html) if html else Path(loaded.train.output_dir) / f"{loaded.name}-data-audit.html"
    audit(loaded, examples, split, target, Console())


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our own rich progress bar covers training; these silence per-file download/load/map bars.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("transformers", "datasets", "bitsandbytes", "accelerate", "peft", "trl", "sentence_transformers",
                 "httpx", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


@app.command()
def finetune(
    recipe: str = typer.Argument("lora-small", help="Recipe name (recipes/<name>.yaml) or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Train an adapter (or the full model), evaluate base vs adapted and write runs/<recipe>-<time>/."""
    from pipeline.recipe import load_recipe
    from pipeline.workflow import finetune as run_finetune

    loaded = load_recipe(recipe, overrides or [])
    run_finetune(loaded)


@app.command()
def validate(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Check a recipe (and its trl/peft settings) without loading any weights."""
    from pipeline.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    typer.echo(f"{loaded.path}: OK ({loaded.adapter.method}, {loaded.model.name})")


@app.command()
def recipes() -> None:
    """List the shipped recipes with their one-line descriptions."""
    from rich.table import Table

    from pipeline.recipe import RECIPES_DIR, list_recipe_files, load_recipe

    table = Table(show_header=True, header_style="bold")
    table.add_column("recipe")
    table.add_column("description")
    for path in list_recipe_files():
        try:
            description = load_recipe(str(path), check=False).description
        except PipelineError as exc:
            description = f"[red]invalid: {exc}[/]"
        table.add_row(str(path.relative_to(RECIPES_DIR).with_suffix("")), description)
    Console().print(table)


def main() -> None:
    """Run the CLI; a PipelineError becomes one line on stderr and a non-zero exit."""
    _quiet_libraries()
    try:
        app()
    except PipelineError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
