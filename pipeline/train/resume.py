"""Resuming: find a run and its newest complete checkpoint, and refuse when the run's inputs changed."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.config.schema import Recipe
from pipeline.errors import RecipeError, TrainingError
from pipeline.files import safe_child
from pipeline.train.manifest import MANIFEST, differences, now, read_manifest, summarize

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
LATEST = "latest"
# transformers.Trainer._save_checkpoint writes weights, then optimizer/scheduler/RNG state, and
# trainer_state.json last; a folder is complete when all of them are there and the state parses.
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
TRAINING_STATE = ("optimizer.pt", "scheduler.pt")


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (missing or unreadable files), or None if complete."""
    folder = Path(folder)
    match = CHECKPOINT.match(folder.name)
    if not folder.is_dir() or match is None:
        return "not a checkpoint-N folder"
    state_file = folder / "trainer_state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing (killed while saving?)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "trainer_state.json is cut short or unreadable"
    if state.get("global_step") != int(match.group(1)):
        return f"trainer_state.json says step {state.get('global_step')}"
    if not any((folder / name).is_file() for name in WEIGHTS):
        return "no weights (adapter_model.safetensors / model.safetensors)"
    missing = [name for name in TRAINING_STATE if not (folder / name).is_file()]
    if not any(folder.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    empty = [p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size == 0]
    if missing or empty:
        return f"missing or empty: {', '.join(missing + empty)}"
    return None


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoint-N folders, oldest step first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if CHECKPOINT.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(CHECKPOINT.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (half-written ones are skipped), or None."""
    for folder in reversed(checkpoints(run_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log.warning("Skipping %s: %s.", folder, problem)
    return None


def set_aside_incomplete(run_dir: Path, chosen: Path) -> list[Path]:
    """Rename incomplete checkpoints newer than `chosen` to incomplete-checkpoint-N (training saves there)."""
    moved = []
    step = int(CHECKPOINT.match(chosen.name).group(1))  # type: ignore[union-attr]
    for folder in checkpoints(run_dir):
        if int(CHECKPOINT.match(folder.name).group(1)) > step:  # type: ignore[union-attr]
            target = folder.with_name(f"incomplete-{folder.name}")
            folder.rename(target)
            moved.append(target)
    return moved


def runs_of(recipe: Recipe) -> list[Path]:
    """Run folders of this recipe under train.output_dir that have a manifest, oldest first."""
    root = Path(recipe.train.output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{recipe.name}-*") if (p / MANIFEST).is_file()]

    def started(path: Path) -> tuple[str, float]:
        try:
            stamp = str(json.loads((path / MANIFEST).read_text(encoding="utf-8"))["times"]["started"])
        except (OSError, ValueError, KeyError, TypeError):
            stamp = ""
        return stamp, path.stat().st_mtime

    return sorted(found, key=started)


def find_run(recipe: Recipe, run: str) -> Path:
    """The run folder to resume: `latest` (the newest run of this recipe) or a run folder path."""
    if run == LATEST:
        found = runs_of(recipe)
        if not found:
            raise RecipeError(
                f"--resume: no earlier run of '{recipe.name}' in {recipe.train.output_dir}/; "
                f"start one with `pipeline finetune {recipe.name}`."
            )
        return found[-1]
    path = Path(run)
    if not (path / MANIFEST).is_file():
        raise RecipeError(f"--resume {run}: not a run folder (no {MANIFEST}); give runs/<recipe>-<time>/.")
    return path


def resume_point(recipe: Recipe, run: str, manifest: dict[str, Any], force: bool) -> tuple[Path, Path, dict]:
    """(run folder, checkpoint, earlier manifest) to continue from; refuses changed inputs unless forced."""
    run_dir = find_run(recipe, run)
    previous = read_manifest(run_dir)
    if previous.get("times", {}).get("finished"):
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
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise TrainingError(
            f"{run_dir}: no complete checkpoint to resume from; start the run again with "
            f"`pipeline finetune {recipe.path or recipe.name}`."
        )
    step = int(CHECKPOINT.match(checkpoint.name).group(1))  # type: ignore[union-attr]
    if 0 < recipe.train.max_steps <= step:
        raise TrainingError(
            f"{checkpoint}: already at step {step} >= train.max_steps={recipe.train.max_steps}; "
            "nothing left to train, raise train.max_steps or start a new run."
        )
    for moved in set_aside_incomplete(run_dir, checkpoint):
        log.warning("Set aside the incomplete checkpoint %s.", moved)
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
            or ("=" in following and not Path(following).is_dir())
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
    manifest: dict[str, Any],
    resume: str | None = None,
    force: bool = False,
    previous: dict[str, Any] | None = None,
) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from or None); previous: the manifest that --from-manifest repeats.

    Records the resume (or the re-run's origin) in `manifest`; writes nothing except a new run folder.
    """
    if resume:
        run_dir, checkpoint, earlier = resume_point(recipe, resume, manifest, force)
        manifest["times"]["started"] = earlier.get("times", {}).get("started", manifest["times"]["started"])
        manifest["resumed"] = [
            *earlier.get("resumed", []),
            {
                "at": now(),
                "checkpoint": checkpoint.name,
                "command": manifest["command"],
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
        manifest["rerun_of"] = {
            "command": previous.get("command"),
            "started": previous.get("times", {}).get("started"),
            "differences": changed,
        }
    return new_run_dir(recipe), None


def recipe_for_finetune(
    recipe: str | None, overrides: list[str], resume: str | None, from_manifest: str | None
) -> tuple[Recipe, dict[str, Any] | None]:
    """The recipe `pipeline finetune` trains, and the manifest it re-runs (--from-manifest) if any.

    `--resume RUN` without a recipe argument resumes with the recipe recorded in RUN's manifest.
    """
    from pipeline.config.loader import load_recipe
    from pipeline.train.manifest import recipe_from_manifest

    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        recipe, overrides = None, [recipe, *overrides]  # typer gave the first override to RECIPE
    if from_manifest:
        if resume or recipe or overrides:
            raise RecipeError(
                "--from-manifest re-runs a recorded configuration as it was; drop the recipe "
                "argument, overrides and --resume."
            )
        return recipe_from_manifest(Path(from_manifest))
    if recipe is None and resume and resume != LATEST:
        if overrides:
            raise RecipeError(
                "--resume RUN without a recipe uses the run's own recipe; name the recipe to "
                "change it (pipeline finetune RECIPE overrides... --resume RUN --force)."
            )
        return recipe_from_manifest(Path(resume) / MANIFEST)[0], None
    return load_recipe(recipe or "lora-small", overrides), None
