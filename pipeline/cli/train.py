"""Training commands: `finetune`, `validate`, `plan` and `recipes`."""

from __future__ import annotations

import typer
from rich.console import Console
from typer.core import TyperCommand

from pipeline.cli.options import OVERRIDES_HELP
from pipeline.errors import PipelineError

ARGV = "pipeline.argv"  # click's Context.meta key: the arguments a KeepsArguments command was given


class KeepsArguments(TyperCommand):
    """A typer command that keeps the arguments it was given, as given (ctx.meta[ARGV]), for passing on."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        """Record args, then parse them as typer does."""
        ctx.meta[ARGV] = list(args)
        return super().parse_args(ctx, args)


def finetune(
    ctx: typer.Context,
    recipe: str = typer.Argument(
        None, help="Recipe name (recipes/<name>.yaml) or path; default lora-small.", show_default=False
    ),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    resume: str = typer.Option(
        None,
        "--resume",
        metavar="[RUN]",
        show_default=False,
        help="Continue from RUN: a run folder (its newest complete checkpoint), a checkpoint-N folder (one "
        "from another transformers/TRL run continues in a new run folder), or this recipe's newest run "
        "when RUN is left out.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Resume or re-run even though the recipe, data or world size changed (prints what changed).",
    ),
    from_manifest: str = typer.Option(
        None,
        "--from-manifest",
        metavar="MANIFEST",
        show_default=False,
        help="Re-run the configuration recorded in runs/<run>/manifest.json.",
    ),
    launch: str = typer.Option(
        None,
        "--launch",
        metavar="ACCELERATE_CONFIG",
        show_default=False,
        help="Start the run through `accelerate launch` with this config (recipes/accelerate/*.yaml, e.g. "
        "fsdp.yaml or cpu-fsdp.yaml), checked against the recipe first.",
    ),
    gpus: int = typer.Option(
        None,
        "--gpus",
        min=1,
        show_default=False,
        help="Processes to launch (one per GPU): replaces the --launch config's num_processes; alone it "
        "launches recipes/accelerate/ddp.yaml.",
    ),
) -> None:
    """Train an adapter (or the full model), evaluate base vs adapted and write runs/<recipe>-<time>/."""
    from pipeline.train.resume import recipe_for_finetune

    loaded, previous = recipe_for_finetune(recipe, overrides or [], resume, from_manifest)
    if launch or gpus:
        from pipeline.train.launch import finetune_arguments, launch_config, run_launched

        given: list[str] = ctx.meta[ARGV]  # registered with cls=KeepsArguments (pipeline.cli.app)
        run_launched(loaded, launch_config(launch, gpus), gpus, finetune_arguments(given))
        return
    from pipeline.train.progress import ProgressBar
    from pipeline.workflow import finetune as run_finetune

    run_finetune(loaded, resume=resume, force=force, previous=previous, callbacks=[ProgressBar()])


def validate(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    launch: str = typer.Option(
        None,
        "--launch",
        metavar="ACCELERATE_CONFIG",
        show_default=False,
        help="Also check the accelerate config the run will be launched with (recipes/accelerate/*.yaml).",
    ),
) -> None:
    """Run every check finetune makes before loading weights: the recipe, trl/peft, trackers, the output folder,
    every data record and the chat template on each conversation (the tokenized data is cached for finetune)."""
    from pipeline.config.loader import load_recipe
    from pipeline.workflow import prepare

    loaded = load_recipe(recipe, overrides or [])
    inputs = prepare(loaded, launch)
    held_out = f", {len(inputs.splits.eval)} eval" if inputs.splits.eval else ", no eval split"
    skipped = sum(inputs.splits.skipped.values())
    train = (
        f"train streamed (its first {len(inputs.train)} records checked)"
        if inputs.stream is not None
        else f"{len(inputs.splits.train)} train"
    )
    tokenized = "" if inputs.stream is not None else f"; {len(inputs.train)} examples tokenized"
    typer.echo(
        f"{loaded.path}: OK ({loaded.adapter.method}, {loaded.model.name}; {train}"
        f"{held_out} records{f', {skipped} skipped' if skipped else ''}{tokenized})"
    )


def plan(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    gpus: int = typer.Option(1, "--gpus", min=1, help="Devices the run is launched on."),
    gpu_memory: str = typer.Option(
        None, "--gpu-memory", help="Memory per device, e.g. 80GiB; proposes a fit."
    ),
    strategy: str = typer.Option("ddp", help="ddp, fsdp, zero2 or zero3 (how state is split over --gpus)."),
    cpu: bool = typer.Option(False, "--cpu", help="Plan a CPU run (process RAM, fp32) instead of a GPU."),
) -> None:
    """Estimate peak memory per device from config.json alone (no weights) and propose a batch that fits."""
    from pipeline.config.loader import load_recipe
    from pipeline.planning.memory import parse_size, print_plan
    from pipeline.train.crosscheck import check_against_libraries

    loaded = load_recipe(recipe, overrides or [])
    check_against_libraries(loaded)  # the plan is for a run that trl and peft would accept
    memory = parse_size(gpu_memory) if gpu_memory else None
    print_plan(loaded, gpus, memory, strategy, "cpu" if cpu else "cuda")  # type: ignore[arg-type]


def recipes() -> None:
    """List the shipped recipes with their one-line descriptions."""
    from rich.table import Table

    from pipeline.config.loader import RECIPES_DIR, list_recipe_files, load_recipe

    table = Table(show_header=True, header_style="bold")
    table.add_column("recipe")
    table.add_column("description")
    for path in list_recipe_files():
        try:
            description = load_recipe(str(path)).description
        except PipelineError as exc:
            description = f"[red]invalid: {exc}[/]"
        table.add_row(str(path.relative_to(RECIPES_DIR).with_suffix("")), description)
    Console().print(table)
