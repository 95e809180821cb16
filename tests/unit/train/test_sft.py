"""The SFTConfig a recipe produces: lora-small gets the fast CPU settings, and each speed lever's switch is honoured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config.loader import load_recipe
from pipeline.train.patches.trl_lm_head import trained_positions_only
from pipeline.train.sampling import ShuffledLengthGroupedSampler
from pipeline.train.stages.sft import build_sft_config


def _config(recipe: str, tmp_path: Path, *overrides: str) -> Any:
    return build_sft_config(load_recipe(recipe, ["train.report_to=[none]", *overrides]), tmp_path)


def test_lora_small_gets_the_fast_settings(tmp_path: Path) -> None:
    """Padding-free batches in random order, no recomputation, fused AdamW, compact LM head, no LoRA
    dropout, and bf16 where it is native (bench/RESULTS.md)."""
    from pipeline.models.precision import bf16_is_native

    recipe = load_recipe("lora-small", [])
    config = build_sft_config(recipe, tmp_path)
    assert config.train_sampling_strategy == "random"
    assert config.padding_free is True and config.packing is False
    assert config.activation_checkpointing is False and config.gradient_checkpointing is False
    assert config.optim == "adamw_torch_fused"
    assert recipe.adapter.dropout == 0.0 and recipe.model.dtype == "native"
    assert config.lr_scheduler_type == "linear" and config.warmup_steps == 0  # TRL's own schedule
    assert config.bf16 is bf16_is_native() and config.fp16 is False
    assert recipe.train.score_trained_only is True


@pytest.mark.parametrize(
    ("setting", "native", "quantization", "bf16"),
    [
        ("native", True, "none", True),
        ("native", False, "none", False),
        ("native", True, "4bit", False),
        ("auto", True, "none", False),  # auto: GPUs only; this test has none
    ],
)
def test_native_precision_and_dtype_are_bf16_where_bf16_is_native(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, native: bool, quantization: str, bf16: bool
) -> None:
    """native = bf16 autocast (and bf16 weights) wherever bf16 is native, never autocast for quantized
    models; auto keeps bf16 for GPUs."""
    import pipeline.models.precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(pipeline.models.precision, "bf16_is_native", lambda: native)
    config = _config(
        "lora-small", tmp_path, f"train.precision={setting}", f"model.quantization={quantization}"
    )
    assert config.bf16 is bf16 and config.fp16 is False
    weights = torch.bfloat16 if setting == "native" and native else torch.float32
    assert pipeline.models.precision.resolve_dtype(setting) == weights


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
    full_rows: list[int] = []
    with trained_positions_only(False):
        full_loss, full_grad = _fused_loss(tiny_model, labels, full_rows)
    compact_rows: list[int] = []
    with trained_positions_only(True) as active:
        assert active is True
        compact_loss, compact_grad = _fused_loss(tiny_model, labels, compact_rows)
    assert full_rows == [2 * 11] and compact_rows == [trained] and trained == 7
    assert compact_loss == pytest.approx(full_loss, rel=1e-6)
    assert full_grad.abs().sum() > 0
    assert torch.allclose(compact_grad, full_grad, atol=1e-6)


def test_build_trainer_applies_the_recipe_switch_while_training_only(
    make_recipe: Any, tiny_model_dir: Path, tiny_tokenizer: Any
) -> None:
    """train.score_trained_only decides whether trl takes the compact path while the trainer trains; trl's
    module and the model's attention are as they were before and after."""
    import trl.trainer.utils as trl_utils
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback

    from pipeline.train.stages.build import build_trainer

    rows = Dataset.from_dict({"input_ids": [[4, 5, 6, 7]] * 2, "assistant_masks": [[0, 0, 1, 1]] * 2})
    cpu = torch.device("cpu")
    original = trl_utils._use_triton
    seen: list[tuple[bool, str]] = []

    class Probe(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen.append((trl_utils._use_triton(cpu), model.config._attn_implementation))

    for enabled in (False, True):
        path = make_recipe(train={"score_trained_only": enabled, "group_by_length": True, "max_steps": 1})
        recipe = load_recipe(str(path), [])
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        trainer = build_trainer(recipe, path.parent / "run", model, tiny_tokenizer, rows, None, [Probe()])
        # group_by_length serves its length groups in random order (pipeline.train.sampling).
        assert isinstance(trainer._get_train_sampler(), ShuffledLengthGroupedSampler)
        assert trl_utils._use_triton is original and trainer.model.config._attn_implementation == "sdpa"
        trainer.train()
        assert seen[-1] == (enabled, "packed_sdpa")  # padding_free (default): per-example attention
        assert trl_utils._use_triton is original and trainer.model.config._attn_implementation == "sdpa"


def test_score_trained_only_is_a_no_op_when_trl_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the trl hook (or its sources) the switch reports False and the CPU keeps trl's own path."""
    import inspect

    import trl.trainer.utils as trl_utils

    def no_source(_: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    with trained_positions_only(True) as active:
        assert active is False
        assert trl_utils._use_triton(torch.device("cpu")) is False


@pytest.mark.parametrize(
    ("dtype", "precision", "mixed"), [("bfloat16", "bf16", True), ("float32", "fp32", False)]
)
def test_adapter_inputs_skip_peft_casts_only_under_autocast(
    make_recipe: Any, tiny_model_dir: Path, tiny_tokenizer: Any, dtype: str, precision: str, mixed: bool
) -> None:
    """Under bf16 autocast peft's fp32 input casts are off during train() only (restored after, for
    evaluation without autocast); without mixed precision they stay."""
    from datasets import Dataset
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import AutoModelForCausalLM, TrainerCallback

    from pipeline.train.stages.build import build_trainer

    seen: list[bool] = []

    class Probe(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen.extend(m.cast_input_dtype_enabled for m in model.modules() if isinstance(m, BaseTunerLayer))

    path = make_recipe(model={"dtype": dtype}, train={"max_steps": 2, "precision": precision})
    recipe = load_recipe(str(path), [])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=getattr(torch, dtype))
    rows = Dataset.from_dict({"input_ids": [[4, 5, 6, 7, 8]] * 4, "assistant_masks": [[0, 0, 1, 1, 1]] * 4})
    trainer = build_trainer(
        recipe, path.parent / "run", model, tiny_tokenizer, rows, None, callbacks=[Probe()]
    )
    assert trainer.args.bf16 is mixed
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert seen and set(seen) == {not mixed}
    after = {m.cast_input_dtype_enabled for m in trainer.model.modules() if isinstance(m, BaseTunerLayer)}
    assert after == {True}


@pytest.mark.parametrize(
    ("overrides", "warmup_steps", "steps_of_100"),
    [
        (["train.warmup_steps=7"], 7, 7),
        (["train.warmup_ratio=0.25"], 0.25, 25),
        (["train.warmup_ratio=0", "train.warmup_steps=1"], 1, 1),  # 1 is one step, not a ratio of 1
        (["train.warmup_ratio=0"], 0, 0),
    ],
)
def test_warmup_steps_or_ratio_reach_transformers(
    tmp_path: Path, overrides: list[str], warmup_steps: float, steps_of_100: int
) -> None:
    config = _config("lora-small", tmp_path, "train.lr_scheduler=cosine", *overrides)
    assert config.warmup_steps == warmup_steps
    assert config.get_warmup_steps(100) == steps_of_100


def test_warmup_steps_and_ratio_together_are_refused() -> None:
    from pipeline.config.schema import TrainSpec
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match=r"warmup_steps \(3\) and warmup_ratio \(0.05\) are both set"):
        load_recipe("dora-small", ["train.warmup_steps=3"])  # its YAML sets warmup_ratio: 0.05
    assert TrainSpec().warmup_ratio == 0.03  # the default ratio ...
    assert TrainSpec(warmup_steps=3).warmup_ratio == 0.0  # ... gives way to steps given alone
    assert load_recipe("dora-small", ["train.warmup_steps=3", "train.warmup_ratio=0"]).train.warmup_steps == 3
