"""Checkpoint folders: is one complete, which is the newest, and can a recipe continue from one (this tool's or
a plain transformers/TRL run's)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import TrainingError

if TYPE_CHECKING:
    from pipeline.config.schema import Recipe

log = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
# transformers.Trainer._save_checkpoint writes weights, then optimizer/scheduler/RNG state, and
# trainer_state.json last; a folder is complete when all of them are there and the state parses. Each
# strategy names the parts its own way (one process and DDP / FSDP full or sharded state / DeepSpeed ZeRO):
ADAPTER_WEIGHTS = ("adapter_model.safetensors",)
FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
WEIGHTS = ADAPTER_WEIGHTS + FULL_WEIGHTS
FSDP_WEIGHTS = ("pytorch_model_fsdp.bin", "pytorch_model_fsdp_0")  # FULL_STATE_DICT file, SHARDED folder
OPTIMIZER = ("optimizer.pt", "optimizer.bin", "optimizer_0")  # DDP, FSDP full state, FSDP sharded folder
DEEPSPEED = "global_step*"  # ZeRO: <tag>/*_model_states.pt and *_optim_states.pt (+ the `latest` tag file)
SCHEDULER = "scheduler.pt"  # DeepSpeed's own scheduler is saved in its global_step folder instead
HOLDS = (
    "a checkpoint folder (checkpoint-N, as transformers' Trainer saves it) holds trainer_state.json, "
    "optimizer.pt, scheduler.pt, rng_state.pth and the weights (adapter_model.safetensors or model.safetensors); "
    "FSDP saves optimizer.bin or optimizer_0/ and pytorch_model_fsdp*, DeepSpeed a global_step*/ folder"
)


def _present(folder: Path, name: str) -> bool:
    """A non-empty file, or a folder with at least one file, named name in folder."""
    path = folder / name
    if path.is_dir():
        return any(p.is_file() for p in path.rglob("*"))
    return path.is_file() and path.stat().st_size > 0


def _deepspeed_parts(folder: Path) -> tuple[bool, bool]:
    """(model states, optimizer states) of a DeepSpeed ZeRO checkpoint's global_step*/ folders."""
    tags = [p for p in folder.glob(DEEPSPEED) if p.is_dir()]
    model = any(next(t.glob("*model_states.pt"), None) for t in tags)
    optimizer = any(next(t.glob("*optim_states.pt"), None) for t in tags)
    return model, optimizer


def _missing_parts(folder: Path) -> list[str]:
    """The parts of a checkpoint that are missing, in any of the layouts above."""
    ds_model, ds_optimizer = _deepspeed_parts(folder)
    ds = any(p.is_dir() for p in folder.glob(DEEPSPEED))
    missing = []
    if not any(_present(folder, name) for name in WEIGHTS + FSDP_WEIGHTS) and not ds_model:
        missing.append("weights (adapter_model.safetensors / model.safetensors)")
    if not any(_present(folder, name) for name in OPTIMIZER) and not ds_optimizer:
        fsdp = any((folder / name).exists() for name in FSDP_WEIGHTS)
        missing.append(
            "optimizer.bin" if fsdp else "global_step*/*_optim_states.pt" if ds else "optimizer.pt"
        )
    if not _present(folder, SCHEDULER) and not ds:
        missing.append(SCHEDULER)
    if not any(folder.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    return missing


def _state(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """trainer_state.json of a folder, or why it cannot be read."""
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{TRAINER_STATE} is missing (killed while saving?)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{TRAINER_STATE} is cut short or unreadable"
    return (state, None) if isinstance(state, dict) else (None, f"{TRAINER_STATE} is not a JSON object")


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from (missing or unreadable files), or None if complete.

    A checkpoint-N folder must record step N; a folder of another name is taken at the step it records.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    state, problem = _state(folder)
    if state is None:
        return problem
    match = CHECKPOINT.match(folder.name)
    step = state.get("global_step")
    if match is not None and step != int(match.group(1)):
        return f"{TRAINER_STATE} says step {step}"
    if not isinstance(step, int) or step < 0:
        return f"{TRAINER_STATE} records no global_step"
    missing = _missing_parts(folder)
    if missing and missing[0].startswith("weights"):
        return "no weights (adapter_model.safetensors / model.safetensors)"
    empty = [p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size == 0]
    if missing or empty:
        return f"missing or empty: {', '.join(dict.fromkeys(missing + empty))}"
    return None


def checkpoint_step(folder: Path) -> int:
    """The optimizer step a complete checkpoint was saved at (its trainer_state.json's global_step)."""
    state, problem = _state(Path(folder))
    if state is None:
        raise TrainingError(f"{folder}: {problem}; {HOLDS}.")
    return int(state["global_step"])


def is_checkpoint(folder: Path) -> bool:
    """True for a folder with a trainer_state.json (complete or not)."""
    return (Path(folder) / TRAINER_STATE).is_file()


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
    """Rename checkpoints newer than `chosen` to incomplete-checkpoint-N (training saves there again)."""
    moved = []
    step = checkpoint_step(chosen)
    for folder in checkpoints(run_dir):
        if int(CHECKPOINT.match(folder.name).group(1)) > step:  # type: ignore[union-attr]
            target = folder.with_name(f"incomplete-{folder.name}")
            folder.rename(target)
            moved.append(target)
    return moved


def check_resumable(checkpoint: Path, method: str, max_steps: int) -> int:
    """The step to continue from; one-line TrainingError when the checkpoint is incomplete, holds weights of
    the other kind than adapter.method trains (adapter vs full model), or is already at train.max_steps."""
    problem = checkpoint_problem(checkpoint)
    if problem is not None:
        raise TrainingError(f"{checkpoint}: cannot resume from this checkpoint: {problem}; {HOLDS}.")
    adapter = any((checkpoint / name).is_file() for name in ADAPTER_WEIGHTS)
    if adapter != (method == "lora"):
        held, other = ("a LoRA adapter", "lora") if adapter else ("full model weights", "full")
        raise TrainingError(
            f"{checkpoint}: holds {held} but the recipe has adapter.method: {method}; resume it with "
            f"adapter.method: {other} (and the rest of the settings it was trained with)."
        )
    step = checkpoint_step(checkpoint)
    if 0 < max_steps <= step:
        raise TrainingError(
            f"{checkpoint}: already at step {step} >= train.max_steps={max_steps}; "
            "nothing left to train, raise train.max_steps or start a new run."
        )
    return step


def _described(rank: int, dora: bool, targets: str) -> str:
    return f"rank {rank}{' DoRA' if dora else ''} on {targets}"


def check_adapter_shape(checkpoint: Path, recipe: Recipe) -> None:
    """One-line TrainingError, before any weight loads, when a LoRA checkpoint's rank, target modules or DoRA
    differ from what the recipe's adapter section builds (loading its weights and optimizer state would
    fail deep inside torch); a run continuing a parent adapter (model.adapter) trains the parent's shape."""
    from pipeline.models.adapters import all_linear_targets
    from pipeline.models.serving import adapter_targets

    adapter, path = recipe.adapter, Path(checkpoint) / "adapter_config.json"
    if adapter.method != "lora" or recipe.model.adapter or not path.is_file():
        return  # FSDP and ZeRO layouts keep no adapter_config.json beside their shards
    config = json.loads(path.read_text(encoding="utf-8"))
    rank, dora = int(config.get("r") or 0), bool(config.get("use_dora"))
    held = adapter_targets(config)  # None: a regular expression, which only the model can resolve
    asked = adapter.target_modules
    if isinstance(asked, list):
        wanted: frozenset[str] | None = frozenset(t.rsplit(".", 1)[-1] for t in asked)
    elif asked.lower() == "all-linear":
        model = recipe.model
        wanted = all_linear_targets(model.name, model.revision, model.trust_remote_code)
    else:
        wanted = None
    fixes = []
    if rank != adapter.r:
        fixes.append(f"adapter.r: {rank}")
    if held is not None and wanted is not None and set(held) != wanted:
        fixes.append(f"adapter.target_modules: [{', '.join(held)}]")
    if dora != adapter.use_dora:
        fixes.append(f"adapter.use_dora: {str(dora).lower()}")
    if fixes:
        held_text = ",".join(held) if held is not None else str(config.get("target_modules"))
        asked_text = asked if isinstance(asked, str) else ",".join(asked)
        raise TrainingError(
            f"{checkpoint}: holds a LoRA adapter of {_described(rank, dora, held_text)}; the "
            f"recipe asks {_described(adapter.r, adapter.use_dora, asked_text)}; resume with "
            f"{', '.join(fixes)} (the settings it was trained with) or start a new run."
        )
