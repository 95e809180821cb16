"""`pipeline finetune RECIPE --launch CONFIG` / `--gpus N`: start the run through `accelerate launch` for the user.

The command line is checked here first (recipe, accelerate config, devices), then accelerate's own launcher
starts one `python -m pipeline finetune ...` per process with the user's own arguments (less --launch/--gpus),
in this process, so the ranks write to this terminal and a failed rank ends in its own one-line error and exit
code.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from pipeline.config.schema import Recipe
from pipeline.errors import PipelineError, RecipeError
from pipeline.ranks import is_distributed
from pipeline.train.preflight import check_launch_config, check_settings, launch_settings

DDP_CONFIG = "ddp.yaml"  # recipes/accelerate/: what --gpus N launches without --launch
# Options that start the processes; the processes themselves must not see them.
LAUNCH_OPTIONS = ("--launch", "--gpus")


class LaunchFailed(PipelineError):
    """A launched rank failed; it printed its own error above. Carries that rank's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def launch_config(launch: str | None, gpus: int | None) -> Path:
    """The accelerate config a --launch/--gpus command line starts (the shipped ddp.yaml for --gpus alone)."""
    if is_distributed():
        raise RecipeError(
            "--launch/--gpus start processes themselves; inside `accelerate launch` or torchrun drop them."
        )
    if launch:
        return Path(launch)
    from pipeline.config.loader import RECIPES_DIR

    return RECIPES_DIR / "accelerate" / DDP_CONFIG


def finetune_arguments(argv: list[str]) -> list[str]:
    """The user's `finetune` arguments as given, less --launch/--gpus and their values (`--launch X` or
    `--launch=X`), for each launched process: an option finetune gains later passes through unchanged."""
    kept: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":  # the rest are arguments, never options
            kept += [token, *tokens]
            break
        if token in LAUNCH_OPTIONS:
            next(tokens, None)
        elif not token.startswith(tuple(f"{name}=" for name in LAUNCH_OPTIONS)):
            kept.append(token)
    return kept


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_arguments(config: Path, gpus: int | None, finetune_args: list[str]) -> list[str]:
    """`accelerate launch` arguments for config (+ --num_processes gpus) that run `pipeline finetune ARGS`.

    A one-machine run gets a free port of its own: two runs on one machine never collide on the config's
    fixed port. A multi-machine config keeps its port (the other machines dial it) and its machine_rank.
    """
    arguments = ["--config_file", str(config)]
    if gpus:
        arguments += ["--num_processes", str(gpus)]
    if launch_settings(config).get("num_machines", 1) == 1:
        arguments += ["--main_process_port", str(_free_port())]
    return [*arguments, "-m", "pipeline", "finetune", *finetune_args]


def run_launched(recipe: Recipe, config: Path, gpus: int | None, finetune_args: list[str]) -> None:
    """Check the recipe (every check without data or weights) and the config against it once, then run
    accelerate's launcher; raises LaunchFailed with the exit code of the first rank that failed."""
    from accelerate.commands.launch import launch_command, launch_command_parser

    check_settings(recipe)
    check_launch_config(config, recipe, gpus)
    args = launch_command_parser().parse_args(launch_arguments(config, gpus, finetune_args))
    # torch's elastic agent logs every rank's exit as WARNING/ERROR lines; each rank prints its own error.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        launch_command(args)
    except Exception as exc:
        code, rank = _failure(exc)
        raise LaunchFailed(
            f"accelerate launch --config_file {config}: rank {rank} stopped with exit code {code} "
            "(its error is above)",
            code,
        ) from None


def _failure(exc: Exception) -> tuple[int, str]:
    """(exit code, rank) of the first failed process in accelerate's or torch's launcher exception."""
    first = getattr(exc, "get_first_failure", None)
    if first is not None:  # torch.distributed.elastic ChildFailedError (one or many processes)
        rank, failure = first()
        code = failure.exitcode
        return (code if code > 0 else 128 - code), str(rank)
    code = getattr(exc, "returncode", 1)  # subprocess.CalledProcessError of a one-process config
    return (code if code > 0 else 128 - code), "0"
