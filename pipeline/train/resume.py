"""Resuming: find a run and its newest complete checkpoint, and refuse when the run's inputs changed."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from pipeline.config.schema import Recipe
from pipeline.errors import PipelineError, RecipeError, TrainingError
from pipeline.files import path_exists, safe_child
from pipeline.runs.manifest import MANIFEST, Manifest
from pipeline.train.checkpoints import (
    HOLDS,
    check_adapter_shape,
    check_resumable,
    is_checkpoint,
    latest_checkpoint,
    set_aside_incomplete,
)
from pipeline.train.manifest import differences, now, read_manifest, summarize

log = logging.getLogger(__name__)

LATEST = "latest"


def runs_of(recipe: Recipe) -> list[Path]:
    """Run folders of this recipe under train.output_dir that have a manifest, oldest first."""
    root = Path(recipe.train.output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{recipe.name}-*") if (p / MANIFEST).is_file()]

    def started(path: Path) -> tuple[str, float]:
        try:
            stamp = read_manifest(path).times.started
        except PipelineError:
            stamp = ""
        return stamp, path.stat().st_mtime

    return sorted(found, key=started)


def run_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run folder of this tool a checkpoint lies in (<run>/checkpoints/checkpoint-N), or None."""
    parent = Path(checkpoint).resolve().parent
    return parent.parent if parent.name == "checkpoints" and (parent.parent / MANIFEST).is_file() else None


def resume_source(run: str) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint) a --resume path names: a run folder of this tool (checkpoint None: its newest),
    a checkpoint inside one, or a checkpoint from anywhere else (run folder None: a new run continues it)."""
    path = Path(run)
    if (path / MANIFEST).is_file():
        return path, None
    if is_checkpoint(path):
        return run_of_checkpoint(path), path
    raise RecipeError(
        f"--resume {run}: not a run folder (no {MANIFEST}) nor a checkpoint folder (no trainer_state.json); "
        f"give runs/<recipe>-<time>/ or a checkpoint folder: {HOLDS}."
    )


def find_run(recipe: Recipe, run: str) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint) to resume: `latest` (the newest run of this recipe) or a path (resume_source)."""
    if run == LATEST:
        found = runs_of(recipe)
        if not found:
            raise RecipeError(
                f"--resume: no earlier run of '{recipe.name}' in {recipe.train.output_dir}/; "
                f"start one with `pipeline finetune {recipe.name}`."
            )
        return found[-1], None
    return resume_source(run)


def resume_point(
    recipe: Recipe, run: str, manifest: Manifest, force: bool
) -> tuple[Path | None, Path, Manifest | None]:
    """(run folder, checkpoint, earlier manifest) to continue from; refuses changed inputs unless forced.

    A checkpoint from outside this tool's run folders gives no run folder and no earlier manifest.
    """
    run_dir, checkpoint = find_run(recipe, run)
    if run_dir is None:  # resume_source named a checkpoint outside this tool's run folders
        foreign = Path(run)
        check_resumable(foreign, recipe.adapter.method, recipe.train.max_steps)
        check_adapter_shape(foreign, recipe)
        return None, foreign, None
    previous = read_manifest(run_dir)
    if previous.times.finished:
        raise TrainingError(
            f"{run_dir}: this run already finished; start a new one with `pipeline finetune "
            f"{recipe.path or recipe.name}`."
        )
    changed = differences(previous, manifest)
    if changed and not force:
        raise TrainingError(
            f"{run_dir}: cannot resume, the run's inputs changed ({summarize(changed)}); "
            "start a new run, or pass --force to resume anyway."
        )
    if changed:
        log.warning("Resuming %s although its inputs changed (--force): %s.", run_dir, summarize(changed, 50))
    checkpoint = checkpoint or latest_checkpoint(run_dir)
    if checkpoint is None:
        raise TrainingError(
            f"{run_dir}: no complete checkpoint to resume from; start the run again with "
            f"`pipeline finetune {recipe.path or recipe.name}`."
        )
    check_resumable(checkpoint, recipe.adapter.method, recipe.train.max_steps)
    check_adapter_shape(checkpoint, recipe)
    for moved in set_aside_incomplete(run_dir, checkpoint):
        log.warning("Set aside the checkpoint %s (newer than the one resumed from).", moved)
    return run_dir, checkpoint, previous


def resume_command(recipe: Recipe, run_dir: Path) -> str:
    """The command line that resumes this run."""
    return f"pipeline finetune {recipe.path or recipe.name} --resume {run_dir}"


def normalize_resume_argv(argv: list[str]) -> list[str]:
    """Give a bare `--resume` (last, or followed by an option or an override) the value `latest`, since typer
    options cannot take an optional value."""
    normalized = []
    for index, arg in enumerate(argv):
        normalized.append(arg)
        following = argv[index + 1] if index + 1 < len(argv) else None
        bare = (
            following is None
            or following.startswith("-")
            or ("=" in following and not path_exists(following, "dir"))
        )
        if arg == "--resume" and bare:
            normalized.append(LATEST)
    return normalized


def new_run_dir(recipe: Recipe) -> Path:
    """A fresh <train.output_dir>/<recipe>-<UTC time>/ folder; never reuses an existing one (a concurrent run
    gets a -2 suffix), and the name cannot climb out of train.output_dir."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    root = Path(recipe.train.output_dir)
    if root.exists() and not root.is_dir():
        raise RecipeError(f"train.output_dir '{root}' is a file; point it at a folder for runs.")
    candidate = safe_child(root, f"{recipe.name}-{stamp}", "run name")
    suffix = 1
    while True:
        try:
            candidate.mkdir(
                parents=True
            )  # no exist_ok: a concurrent run never shares (or overwrites) a folder
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = root / f"{recipe.name}-{stamp}-{suffix}"


def open_run(
    recipe: Recipe,
    manifest: Manifest,
    resume: str | None = None,
    force: bool = False,
    previous: Manifest | None = None,
) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from or None); previous: the manifest that --from-manifest repeats.

    Records the resume (or the re-run's origin) in `manifest`; writes nothing except a new run folder.
    """
    if resume:
        run_dir, checkpoint, earlier = resume_point(recipe, resume, manifest, force)
        if run_dir is None or earlier is None:  # another run's checkpoint (plain transformers/TRL): a new run
            manifest.resumed_from = {"checkpoint": str(checkpoint.resolve()), "at": now()}
            return new_run_dir(recipe), checkpoint
        manifest.times.started = earlier.times.started
        if earlier.resumed_from is not None:
            manifest.resumed_from = earlier.resumed_from
        manifest.resumed = [
            *earlier.resumed,
            {
                "at": now(),
                "checkpoint": checkpoint.name,
                "command": manifest.command,
                "forced": force,
                "differences": differences(earlier, manifest),
            },
        ]
        return run_dir, checkpoint
    if previous is not None:
        changed = differences(previous, manifest)
        if changed and not force:
            raise RecipeError(
                f"--from-manifest: the recorded run's inputs changed ({summarize(changed)}); "
                "restore them, or pass --force to run with what is there now."
            )
        if changed:
            log.warning("Re-running with changed inputs (--force): %s.", summarize(changed, 50))
        manifest.rerun_of = {
            "command": previous.command,
            "started": previous.times.started,
            "differences": changed,
        }
    return new_run_dir(recipe), None


def recipe_for_finetune(
    recipe: str | None, overrides: list[str], resume: str | None, from_manifest: str | None
) -> tuple[Recipe, Manifest | None]:
    """The recipe `pipeline finetune` trains, and the manifest it re-runs (--from-manifest) if any.

    `--resume RUN` without a recipe argument resumes with the recipe recorded in RUN's manifest.
    """
    from pipeline.config.loader import load_recipe
    from pipeline.train.manifest import recipe_from_manifest

    if recipe is not None and "=" in recipe and not path_exists(recipe):
        recipe, overrides = None, [recipe, *overrides]  # typer gave the first override to RECIPE
    if from_manifest:
        if resume or recipe or overrides:
            raise RecipeError(
                "--from-manifest re-runs a recorded configuration as it was; drop the recipe "
                "argument, overrides and --resume."
            )
        return recipe_from_manifest(Path(from_manifest))
    run_dir = resume_source(resume)[0] if resume and resume != LATEST else None  # a bad path fails here
    if recipe is None and resume and resume != LATEST:
        if run_dir is None:
            raise RecipeError(
                f"--resume {resume}: this checkpoint is not from a run folder of this tool, so name the "
                f"recipe that continues it: pipeline finetune RECIPE --resume {resume}"
            )
        if overrides:
            raise RecipeError(
                "--resume RUN without a recipe uses the run's own recipe; name the recipe to "
                "change it (pipeline finetune RECIPE overrides... --resume RUN --force)."
            )
        return recipe_from_manifest(run_dir / MANIFEST)[0], None
    loaded = load_recipe(recipe or "lora-small", overrides)
    if resume and resume != LATEST and run_dir is None:  # a foreign checkpoint is checked before weights load
        check_resumable(Path(resume), loaded.adapter.method, loaded.train.max_steps)
        check_adapter_shape(Path(resume), loaded)
    return loaded, None
