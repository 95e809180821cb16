"""recipes/accelerate/*.yaml validate with accelerate itself: known keys, launch arguments, FSDP plugin values."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "recipes" / "accelerate").glob("*.yaml"))
EXPECTED = {"cpu-ddp", "cpu-fsdp", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3", "two-node-fsdp"}


def _launch_args(path: Path):  # type: ignore[no-untyped-def]
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "pipeline", "finetune", "x"])
    return _validate_launch_command(args)[0]


def test_every_config_is_shipped() -> None:
    assert {p.stem for p in CONFIGS} == EXPECTED


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_keys_are_known_to_accelerate(path: Path) -> None:
    """Unknown top-level keys fail in accelerate; nested ones would be dropped silently, so check them here."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(path))
    known = set(vars(launch_command_parser().parse_args(["x.py"])))
    nested = [k if k.startswith("fsdp") else f"fsdp_{k}" for k in config.fsdp_config or {}]
    nested += list(config.deepspeed_config or {})
    assert [k for k in nested if k not in known] == []
    args = _launch_args(path)
    assert args.num_processes >= 2 and args.mixed_precision == "no"  # precision comes from the recipe


def test_cpu_ddp_really_starts_two_ranks_on_cpu() -> None:
    args = _launch_args(CONFIGS[[p.stem for p in CONFIGS].index("cpu-ddp")])
    assert args.multi_gpu and args.use_cpu  # MULTI_CPU or --cpu alone would start ONE process
    assert args.num_processes == 2


@pytest.mark.parametrize("name", ["fsdp", "cpu-fsdp", "two-node-fsdp"])
def test_fsdp_configs_build_an_fsdp2_plugin_that_saves_full_state(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = _launch_args(CONFIGS[[p.stem for p in CONFIGS].index(name)])
    for key, value in prepare_multi_gpu_env(args).items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)  # Trainer.save_model writes nothing when sharded
    assert plugin.auto_wrap_policy is not None


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs(stage: int) -> None:
    args = _launch_args(CONFIGS[[p.stem for p in CONFIGS].index(f"deepspeed-zero{stage}")])
    assert args.use_deepspeed and int(args.zero_stage) == stage
    if stage == 3:  # without it the adapter is saved with empty tensors
        assert str(args.zero3_save_16bit_model).lower() == "true"
