"""Checkpoint completeness knows how each strategy saves: one process/DDP, FSDP full or sharded state, ZeRO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.train.checkpoints import check_resumable, checkpoint_problem, latest_checkpoint

# The files transformers' Trainer writes per strategy (as seen in 2-process runs here, and in
# transformers' _save_optimizer_and_scheduler for DeepSpeed); trainer_state.json is added to each.
LAYOUTS = {
    "ddp": [
        "adapter_model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state_0.pth",
        "rng_state_1.pth",
    ],
    "fsdp-full-state-lora": [
        "adapter_model.safetensors",
        "pytorch_model_fsdp.bin",
        "optimizer.bin",
        "scheduler.pt",
        "rng_state_0.pth",
        "rng_state_1.pth",
    ],
    "fsdp-full-state-full": [
        "model.safetensors",
        "pytorch_model_fsdp.bin",
        "optimizer.bin",
        "scheduler.pt",
        "rng_state_0.pth",
    ],
    "fsdp-sharded": [
        "pytorch_model_fsdp_0/__0_0.distcp",
        "optimizer_0/__0_0.distcp",
        "scheduler.pt",
        "rng_state_0.pth",
    ],
    "zero3": [
        "adapter_model.safetensors",
        "latest",
        "global_step4/mp_rank_00_model_states.pt",
        "global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "rng_state_0.pth",
    ],
}


def _write(folder: Path, files: list[str], step: int = 4) -> Path:
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_is_complete(tmp_path: Path, layout: str) -> None:
    folder = _write(tmp_path / "checkpoint-4", LAYOUTS[layout])
    assert checkpoint_problem(folder) is None
    method = "full" if "adapter_model.safetensors" not in LAYOUTS[layout] else "lora"
    assert check_resumable(folder, method, 10) == 4


@pytest.mark.parametrize(
    ("layout", "drop", "missing"),
    [
        ("fsdp-full-state-lora", "optimizer.bin", "optimizer.bin"),
        ("fsdp-sharded", "optimizer_0/__0_0.distcp", "optimizer.bin"),
        ("fsdp-full-state-full", "scheduler.pt", "scheduler.pt"),
        (
            "zero3",
            "global_step4/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "global_step*/*_optim_states.pt",
        ),
        ("ddp", "optimizer.pt", "optimizer.pt"),
    ],
)
def test_a_missing_part_of_each_layout_is_named(tmp_path: Path, layout: str, drop: str, missing: str) -> None:
    folder = _write(tmp_path / "checkpoint-4", [f for f in LAYOUTS[layout] if f != drop])
    assert checkpoint_problem(folder) == f"missing or empty: {missing}"


def test_an_empty_sharded_folder_is_no_weights(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "checkpoint-4", ["optimizer_0/__0_0.distcp", "scheduler.pt", "rng_state_0.pth"]
    )
    (folder / "pytorch_model_fsdp_0").mkdir()
    assert checkpoint_problem(folder) == "no weights (adapter_model.safetensors / model.safetensors)"


def test_the_newest_complete_fsdp_checkpoint_is_resumed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write(run / "checkpoints" / "checkpoint-2", LAYOUTS["fsdp-full-state-lora"], step=2)
    half = LAYOUTS["fsdp-full-state-lora"][:2]  # killed while saving: no optimizer, scheduler or RNG yet
    _write(run / "checkpoints" / "checkpoint-4", half, step=4)
    assert latest_checkpoint(run) == run / "checkpoints" / "checkpoint-2"
