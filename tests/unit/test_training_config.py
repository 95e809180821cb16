"""The SFTConfig a recipe produces: lora-small gets the fast CPU settings, and each speed lever's switch is honoured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.recipe import load_recipe
from pipeline.sampling import ShuffledLengthGroupedSampler
from pipeline.speed import score_trained_positions_only
from pipeline.training import build_sft_config


def _config(recipe: str, tmp_path: Path, *overrides: str) -> Any:
    return build_sft_config(load_recipe(recipe, ["train.report_to=[none]", *overrides]), tmp_path)


def test_lora_small_gets_the_fast_settings(tmp_path: Path) -> None:
    """Length-grouped padded batches, no recomputation, fused AdamW, compact LM head (bench/RESULTS.md)."""
    recipe = load_recipe("lora-small", [])
    config = build_sft_config(recipe, tmp_path)
    assert config.train_sampling_strategy == "group_by_length"
    assert config.padding_free is False  # SDPA on CPU is quadratic in a padding-free row
    assert config.packing is False
    assert config.activation_checkpointing is False and config.gradient_checkpointing is False
    assert config.optim == "adamw_torch_fused"
    if (
        not torch.cuda.is_available()
    ):  # fp32 on CPU: bf16 changes the numbers, and is slower without AVX-512 BF16
        assert config.bf16 is False and config.fp16 is False
    assert recipe.train.score_trained_only is True


@pytest.mark.parametrize(
    ("override", "field", "expected"),
    [
        ("train.padding_free=true", "padding_free", True),
        ("train.padding_free=false", "padding_free", False),
        ("train.group_by_length=false", "train_sampling_strategy", "random"),
        ("train.group_by_length=true", "train_sampling_strategy", "group_by_length"),
        ("train.gradient_checkpointing=true", "activation_checkpointing", True),
        ("train.gradient_checkpointing=false", "activation_checkpointing", False),
        ("train.optim=adamw_torch", "optim", "adamw_torch"),
    ],
)
def test_each_lever_switch_is_honoured(tmp_path: Path, override: str, field: str, expected: Any) -> None:
    """Overriding a lever on the command line changes exactly that SFTConfig setting."""
    assert getattr(_config("lora-small", tmp_path, override), field) == expected


def test_packing_overrides_padding_free_and_grouping(tmp_path: Path) -> None:
    """Packing owns the row layout: no padding-free flag, no length grouping, and trl gets max_length."""
    config = _config(
        "lora-small", tmp_path, "train.packing=true", "train.padding_free=true", "train.max_length=300"
    )
    assert (config.packing, config.padding_free, config.train_sampling_strategy) == (True, False, "random")
    assert config.max_length == 300


def _fused_loss(model: Any, labels: torch.Tensor, rows: list[int]) -> tuple[float, torch.Tensor]:
    """Loss and input-embedding gradient through trl's fused LM head, recording the rows it projects."""
    import trl.trainer.utils as trl_utils

    real = trl_utils._ChunkedLogProbFunction

    class Spy:
        @staticmethod
        def apply(hidden: torch.Tensor, *args: Any) -> Any:
            rows.append(hidden.shape[0])
            return real.apply(hidden, *args)

    trl_utils._ChunkedLogProbFunction = Spy
    try:
        model.zero_grad()
        input_ids = torch.arange(4, 4 + labels.numel()).view_as(labels) % model.config.vocab_size
        loss = model(input_ids=input_ids, labels=labels, fused_lm_head=True).loss
        loss.backward()
    finally:
        trl_utils._ChunkedLogProbFunction = real
    return loss.item(), model.get_input_embeddings().weight.grad.clone()


def test_score_trained_only_projects_only_loss_positions_with_the_same_loss(tiny_model: Any) -> None:
    """On CPU the compact LM head sees only the labelled rows, and loss and gradients are unchanged."""
    from trl.trainer.utils import add_fused_lm_head

    add_fused_lm_head(tiny_model)
    labels = torch.full((2, 12), -100)
    labels[0, 5:9] = torch.tensor([7, 8, 9, 10])
    labels[1, 2:5] = torch.tensor([11, 12, 13])
    trained = int((labels[:, 1:] != -100).sum())  # the head predicts the next token: labels shift by one
    try:
        full_rows: list[int] = []
        score_trained_positions_only(False)
        full_loss, full_grad = _fused_loss(tiny_model, labels, full_rows)
        compact_rows: list[int] = []
        assert score_trained_positions_only(True) is True
        compact_loss, compact_grad = _fused_loss(tiny_model, labels, compact_rows)
    finally:
        score_trained_positions_only(False)
    assert full_rows == [2 * 11] and compact_rows == [trained] and trained == 7
    assert compact_loss == pytest.approx(full_loss, rel=1e-6)
    assert full_grad.abs().sum() > 0
    assert torch.allclose(compact_grad, full_grad, atol=1e-6)


def test_build_trainer_applies_the_recipe_switch(
    make_recipe: Any, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    """train.score_trained_only decides whether trl takes the compact path for the trainer being built."""
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from pipeline.training import build_trainer

    rows = Dataset.from_dict({"input_ids": [[4, 5, 6, 7]], "assistant_masks": [[0, 0, 1, 1]]})
    cpu = torch.device("cpu")
    try:
        for enabled in (False, True):
            path = make_recipe(train={"score_trained_only": enabled})
            recipe = load_recipe(str(path), [])
            model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
            trainer = build_trainer(recipe, path.parent / "run", model, tiny_tokenizer, rows, None)
            assert trl_utils._use_triton(cpu) is enabled
            # group_by_length (the default) serves its length groups in random order (pipeline.sampling).
            assert isinstance(trainer._get_train_sampler(), ShuffledLengthGroupedSampler)
    finally:
        score_trained_positions_only(False)


def test_score_trained_only_is_a_no_op_when_trl_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the trl hook (or its sources) the switch reports False and the CPU keeps trl's own path."""
    import inspect

    import trl.trainer.utils as trl_utils

    def no_source(_: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    assert score_trained_positions_only(True) is False
    assert trl_utils._use_triton(torch.device("cpu")) is False
