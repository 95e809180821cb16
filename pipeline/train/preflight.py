"""Checks that need neither data nor weights: the library cross-check, trackers, the output folder, the launch.

`pipeline validate` and `finetune` both run them (through pipeline.workflow.prepare), before any data or weight
loads, so a run never fails late on something that could be known now.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.config.schema import Recipe, TrainSpec
from pipeline.config.stages import DistillSpec, SampledSpec
from pipeline.config.strict_yaml import load_yaml_file
from pipeline.errors import RecipeError
from pipeline.models.parent import parent_of
from pipeline.models.precision import resolved_precision
from pipeline.train.crosscheck import check_against_libraries
from pipeline.train.trackers import check_trackers

DISTRIBUTED_TYPES = ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED", "MULTI_XPU", "MULTI_NPU", "XLA")


def check_settings(recipe: Recipe, launch: str | None = None) -> None:
    """Every check of a recipe that reads neither data nor weights; `launch` is an accelerate config file."""
    source = str(recipe.path or recipe.name)
    check_against_libraries(recipe)
    parent_of(recipe)  # model.adapter exists, is LoRA and fits model.name
    if isinstance(recipe.stage_settings, SampledSpec):  # user reward files import now, not after weights load
        from pipeline.train.stages.grpo import reward_functions

        reward_functions(recipe)
    if isinstance(recipe.stage_settings, DistillSpec):  # the teacher exists, in safetensors, same vocabulary
        from pipeline.train.teacher import check_vocabulary, resolve_teacher

        check_vocabulary(recipe, resolve_teacher(recipe))
    check_trackers(recipe.train.report_to, source)
    check_output_dir(recipe.train, source)
    if launch:
        check_launch_config(Path(launch), recipe)


def check_output_dir(train: TrainSpec, source: str) -> None:
    """train.output_dir is a folder, or can become one, that this user may write to (nothing is created)."""
    root = Path(train.output_dir).expanduser().absolute()
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_file():
        raise RecipeError(
            f"{source}: train.output_dir '{root}' is a file"
            + ("" if existing == root else f" ('{existing}')")
            + "; point it at a folder for runs."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        from pipeline.train.guards import WRITABLE_FIX, StorageError

        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        reason = "the file system is read-only" if read_only else "permission denied"
        raise StorageError(f"{existing}: cannot write ({reason}); {WRITABLE_FIX} ({source}).")


def launch_settings(path: Path) -> dict[str, Any]:
    """An accelerate config file's settings; one-line RecipeError when it is missing or not a YAML mapping."""
    if not path.is_file():
        raise RecipeError(f"{path}: accelerate config not found; see recipes/accelerate/ for ready ones.")
    config = load_yaml_file(path)
    if not isinstance(config, dict):
        raise RecipeError(
            f"{path}: an accelerate config must be a YAML mapping (accelerate config writes one)."
        )
    return config


def check_launch_config(path: Path, recipe: Recipe, gpus: int | None = None) -> None:
    """An accelerate config file that exists, parses, and agrees with the recipe and this machine;
    gpus: the --gpus count that replaces the config's num_processes."""
    import importlib.util

    config = launch_settings(path)
    if gpus is not None:
        config = {**config, "num_processes": gpus}
    declared = config.get("distributed_type", "NO")
    kind = "NO" if declared is False else str(declared)  # YAML 1.1 reads an unquoted NO as false
    if kind not in DISTRIBUTED_TYPES:
        raise RecipeError(f"{path}: distributed_type '{kind}' is not one of {', '.join(DISTRIBUTED_TYPES)}.")
    processes = config.get("num_processes", 1)
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise RecipeError(f"{path}: num_processes must be a whole number >= 1 (got {processes!r}).")
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise RecipeError(f"{path}: distributed_type DEEPSPEED needs deepspeed; pip install deepspeed.")
    if kind in ("FSDP", "DEEPSPEED") and recipe.model.quantization == "8bit":
        raise RecipeError(
            f"{path}: {kind} cannot shard an 8-bit model; use model.quantization: 4bit (QLoRA) or none."
        )
    _check_devices(path, config, kind, processes)
    _check_mixed_precision(path, config, recipe)


def _check_devices(path: Path, config: dict[str, Any], kind: str, processes: int) -> None:
    import torch

    if config.get("use_cpu") or kind == "NO":
        return
    gpus = torch.cuda.device_count()
    if gpus == 0:
        raise RecipeError(
            f"{path}: {kind} with use_cpu false needs GPUs and this machine has none; for processes on CPU "
            "use recipes/accelerate/cpu-ddp.yaml or cpu-fsdp.yaml (use_cpu: true)."
        )
    machines = config.get("num_machines", 1)
    if machines == 1 and processes > gpus:
        raise RecipeError(
            f"{path}: num_processes is {processes} but this machine has {gpus} GPU(s); set num_processes: {gpus}."
        )


def _check_mixed_precision(path: Path, config: dict[str, Any], recipe: Recipe) -> None:
    launched = str(config.get("mixed_precision", "no"))
    ours = resolved_precision(recipe.train.precision, recipe.model.quantization)
    if launched not in ("no", "fp32") and launched != ours:
        raise RecipeError(
            f"{path}: mixed_precision '{launched}' contradicts the recipe's train.precision (resolves to "
            f"'{ours}' here); set mixed_precision: 'no' there and choose train.precision in the recipe."
        )
