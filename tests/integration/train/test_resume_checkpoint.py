"""`--resume CHECKPOINT` from outside this tool's run folders (a copied checkpoint, a plain TRL run's) and
`train.warmup_steps`, through pipeline.cli.app.main on the tiny model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # One thread: fast on a busy machine and the same float reduction order in every run.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield
    torch.set_num_threads(threads)


def _history(checkpoint: Path) -> dict[int, dict[str, float]]:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_a_foreign_checkpoint_continues_in_a_new_run_with_its_optimizer_and_schedule(
    make_recipe: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = make_recipe(
        train={
            "max_steps": 4,
            "save_steps": 2,
            "precision": "fp32",
            "lr_scheduler": "linear",
            "warmup_steps": 2,
        },
        eval={"enabled": False},
    )
    code, err = run_cli(["finetune", str(recipe)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    (first,) = _runs(tmp_path / "runs")
    want = _history(first / "checkpoints" / "checkpoint-4")
    # Linear warm-up over 2 steps to 1e-2, then linear decay to 0 at step 4 (the lr each step used).
    assert [round(want[s]["learning_rate"], 8) for s in (1, 2, 3, 4)] == [0.0, 0.005, 0.01, 0.005]

    foreign = tmp_path / "elsewhere" / "checkpoint-2"
    shutil.copytree(first / "checkpoints" / "checkpoint-2", foreign)
    code, err = run_cli(["finetune", str(recipe), "--resume", str(foreign)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    assert "resuming from checkpoint-2" in " ".join(err.split())
    second = next(p for p in _runs(tmp_path / "runs") if p != first)  # a new run folder, the first untouched
    got = _history(second / "checkpoints" / "checkpoint-4")
    for step in (3, 4):  # same data order, optimizer moments and schedule as the uninterrupted run
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], abs=1e-6), step
        assert got[step]["learning_rate"] == pytest.approx(want[step]["learning_rate"], abs=1e-12), step
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["resumed_from"]["checkpoint"] == str(foreign.resolve())
    assert not manifest.get("resumed") and manifest["times"]["finished"]
    assert not (tmp_path / "elsewhere" / "checkpoint-4").exists()  # new checkpoints go to the new run


def test_a_plain_trl_checkpoint_is_resumed(
    make_recipe: Callable[..., Path],
    tiny_model_dir: Path,
    chat_files: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    # A plain TRL run with the LoRA settings of the tiny recipe (r 4, alpha 8, all linear layers).
    trl_out = tmp_path / "trl-out"
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        train_dataset=load_dataset("json", data_files=str(chat_files[0]), split="train"),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
        args=SFTConfig(
            output_dir=str(trl_out),
            max_steps=2,
            save_steps=2,
            per_device_train_batch_size=2,
            report_to="none",
            use_cpu=True,
            learning_rate=1e-2,
            lr_scheduler_type="constant",  # a linear decay would end at lr 0 at its step 2
            max_length=64,
        ),
    )
    trainer.train()
    checkpoint = trl_out / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()

    recipe = make_recipe(train={"max_steps": 3, "precision": "fp32"}, eval={"enabled": False})
    code, err = run_cli(["finetune", str(recipe), "--resume", str(checkpoint)], monkeypatch, capsys)
    assert code in (0, None), err[-3000:]
    (run,) = _runs(tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    # One step after TRL's two: epoch 3/12 (24 examples in batches of 2), not a fresh start at step 1.
    assert metrics["train"]["steps"] == 3
    assert [e["epoch"] for e in metrics["train"]["log_history"] if e["step"] == 3] == [0.25]
    adapted = load_file(run / "adapter" / "adapter_model.safetensors")
    started = load_file(checkpoint / "adapter_model.safetensors")
    assert adapted.keys() == started.keys()
    assert any(not torch.equal(adapted[k], started[k]) for k in started)  # the third step trained
    assert all(started[k].abs().sum() > 0 for k in started if "lora_B" in k)  # TRL's two steps were kept
