"""`pipeline finetune RECIPE --launch CONFIG` / `--gpus N`: what is checked before anything starts, the
accelerate arguments, and the exit code of a failed rank; and the distributed helpers in one process."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_cli

from pipeline.errors import PipelineError
from pipeline.train import distributed
from pipeline.train.launch import _failure, finetune_arguments, launch_arguments, launch_config

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "recipes" / "accelerate"


def test_one_machine_gets_a_free_port_and_the_gpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    args = launch_arguments(CONFIGS / "cpu-fsdp.yaml", 4, ["lora-small", "train.max_steps=2"])
    assert args[:4] == ["--config_file", str(CONFIGS / "cpu-fsdp.yaml"), "--num_processes", "4"]
    port = int(args[args.index("--main_process_port") + 1])
    assert port != 29512 and port > 0  # not the config's fixed port: two runs on a machine never collide
    assert args[-5:] == ["-m", "pipeline", "finetune", "lora-small", "train.max_steps=2"]


def test_a_multi_machine_config_keeps_its_port() -> None:
    args = launch_arguments(CONFIGS / "two-node-fsdp.yaml", None, ["lora-small"])
    assert "--main_process_port" not in args and "--num_processes" not in args


def test_gpus_alone_launches_the_shipped_ddp_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch_config(None, 2) == CONFIGS / "ddp.yaml"
    assert launch_config("my.yaml", 2) == Path("my.yaml")


def test_the_first_failed_rank_gives_the_exit_code() -> None:
    failure = SimpleNamespace(exitcode=4)
    torch_error = SimpleNamespace(get_first_failure=lambda: (1, failure))
    assert _failure(torch_error) == (4, "1")  # type: ignore[arg-type]
    assert _failure(SimpleNamespace(returncode=-9)) == (137, "0")  # type: ignore[arg-type]  # SIGKILL


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--gpus", "2"], "needs GPUs and this machine has none"),
        (["--launch", "missing.yaml"], "missing.yaml: accelerate config not found"),
    ],
)
def test_a_launch_that_cannot_work_fails_before_any_process_starts(
    argv: list[str],
    expected: str,
    make_recipe: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    started: list[Any] = []
    monkeypatch.setattr("accelerate.commands.launch.launch_command", started.append)
    code, err = run_cli(["finetune", str(make_recipe()), *argv], monkeypatch, capsys)
    assert code == 2 and started == []
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err


def test_the_ranks_get_the_same_recipe_overrides_and_resume(
    make_recipe: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launched: list[Any] = []
    monkeypatch.setattr("accelerate.commands.launch.launch_command", launched.append)
    recipe = str(make_recipe())
    code, err = run_cli(
        ["finetune", recipe, "train.max_steps=2", "--launch", str(CONFIGS / "cpu-ddp.yaml"), "--force"],
        monkeypatch,
        capsys,
    )
    assert code in (0, None), err
    (args,) = launched
    assert args.config_file == str(CONFIGS / "cpu-ddp.yaml") and args.main_process_port > 0
    assert args.module and args.training_script == "pipeline"
    assert args.training_script_args == ["finetune", recipe, "train.max_steps=2", "--force"]


@pytest.mark.parametrize(
    ("argv", "kept"),
    [
        (["r", "--launch", "c.yaml", "x=1", "--gpus", "2", "--force"], ["r", "x=1", "--force"]),
        (["--launch=c.yaml", "r", "--gpus=2", "--resume", "latest"], ["r", "--resume", "latest"]),
        (["r", "--launch", "c.yaml", "--", "--gpus", "x=1"], ["r", "--", "--gpus", "x=1"]),
    ],
)
def test_launch_passes_the_users_arguments_on_less_its_own(argv: list[str], kept: list[str]) -> None:
    assert finetune_arguments(argv) == kept


def _finetune_options() -> dict[str, list[str]]:
    """Each option in finetune's signature (--launch/--gpus aside) as a user would type it: a flag alone, or
    the option and a value of its type."""
    import inspect
    import typing

    from typer.models import OptionInfo

    from pipeline.cli.train import finetune

    types = typing.get_type_hints(finetune)
    typed = {}
    for name, parameter in inspect.signature(finetune).parameters.items():
        info = parameter.default
        if not isinstance(info, OptionInfo) or name in ("launch", "gpus"):
            continue
        option = info.param_decls[0] if info.param_decls else f"--{name.replace('_', '-')}"
        value = {bool: [], int: ["3"]}.get(types[name], ["some-value"])
        typed[name] = [option, *value]
    return typed


def test_every_finetune_option_survives_launch(
    make_recipe: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each option in finetune's signature (so one added later is covered too) reaches the launched
    processes as the user typed it, in the user's order."""
    from pipeline.config.loader import load_recipe

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launched: list[Any] = []
    monkeypatch.setattr("accelerate.commands.launch.launch_command", launched.append)
    recipe = str(make_recipe())
    # --resume and --from-manifest need earlier runs: the recipe they would resolve to is the plain one.
    monkeypatch.setattr(
        "pipeline.train.resume.recipe_for_finetune", lambda name, overrides, *_: (load_recipe(name), None)
    )
    options = _finetune_options()
    assert set(options) >= {"resume", "force", "from_manifest"}
    given = [token for typed in options.values() for token in typed]
    argv = ["finetune", "--gpus", "1", *given[:2], recipe, "train.max_steps=2", *given[2:]]
    code, err = run_cli([*argv, "--launch", str(CONFIGS / "cpu-ddp.yaml")], monkeypatch, capsys)
    assert code in (0, None), err
    (args,) = launched
    assert args.training_script_args == ["finetune", *given[:2], recipe, "train.max_steps=2", *given[2:]]
    assert args.num_processes == 1


def test_launching_from_inside_a_launched_process_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import RecipeError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match="inside `accelerate launch` or torchrun drop them"):
        launch_config("recipes/accelerate/cpu-fsdp.yaml", None)


def test_one_process_runs_everything_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.once_per_machine(lambda: 7, "the data", 5) == 7
    assert distributed.agree(lambda: "run-folder") == "run-folder"
    with pytest.raises(ZeroDivisionError):
        distributed.agree(lambda: 1 / 0)


def test_a_collective_whose_peer_is_gone_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    gloo = RuntimeError(
        "[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:46792: Connection reset by peer."
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    error = distributed.peer_lost(gloo)
    assert error is not None and str(error) == (
        "rank 1 stopped: another rank stopped (its own output says why)"
    )
    assert distributed.peer_lost(RuntimeError("CUDA out of memory")) is None  # not a collective's failure
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.peer_lost(gloo) is None  # one process has no peer


def test_a_full_disk_on_rank_0_reaches_the_other_ranks_as_its_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    def write_report() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "runs/tiny/report.html")

    _, failure, own = distributed._outcome(write_report)
    assert isinstance(own, PipelineError) and failure is not None
    message, code = failure
    assert message.startswith("runs/tiny/report.html: cannot write") and code == own.exit_code == 8
    monkeypatch.setattr(distributed, "REPORT_GRACE_S", 0)
    with pytest.raises(distributed.RankFailed) as stopped:  # what every other rank raises
        distributed._raise_first([(1, None), (0, failure)], None)
    assert str(stopped.value) == f"rank 0 failed: {message}" and stopped.value.exit_code == 8
