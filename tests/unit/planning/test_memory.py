"""pipeline.planning.memory: exact parameter counts from config.json alone, memory arithmetic, sharding and proposals."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.planning.memory import (
    GIB,
    activation_bytes_per_token,
    estimate,
    model_shape,
    parse_size,
    propose,
)


@pytest.fixture
def recipe(make_recipe: Any) -> Any:
    return load_recipe(str(make_recipe(train={"batch_size": 4, "max_length": 64})))


def rows(plan: Any) -> dict[str, int]:
    return {name: size for name, size, _ in plan.rows}


def test_parse_size_units_and_error() -> None:
    assert parse_size("80GiB") == 80 * GIB
    assert parse_size("24GB") == 24 * 10**9
    assert parse_size("40") == 40 * GIB
    assert parse_size("512 MiB") == 512 * 1024**2
    with pytest.raises(RecipeError, match=r"--gpu-memory 'lots'.*80GiB"):
        parse_size("lots")


def test_shape_counts_match_the_real_model(recipe: Any, tiny_model: Any) -> None:
    """Counts from the empty meta-device model equal those of the loaded model and its LoRA wrapper."""
    from peft import get_peft_model

    from pipeline.models.adapters import build_peft_config

    shape = model_shape(recipe)
    assert shape.params == sum(p.numel() for p in tiny_model.parameters())
    head = tiny_model.get_output_embeddings()
    linear = [m for m in tiny_model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    assert shape.quantizable == sum(m.weight.numel() for m in linear)
    peft_model = get_peft_model(tiny_model, build_peft_config(recipe.adapter))
    assert shape.trainable == sum(p.numel() for p in peft_model.parameters() if p.requires_grad) > 0
    assert (shape.layers, shape.hidden, shape.intermediate, shape.q_width, shape.kv_width) == (
        2,
        32,
        64,
        32,
        16,
    )


def test_activation_formula_matches_saved_tensors(recipe: Any, tiny_model: Any) -> None:
    """The per-token activation estimate is within 35% of the bytes autograd really keeps (tiny Llama, fp32)."""
    from peft import get_peft_model

    from pipeline.models.adapters import build_peft_config

    model = get_peft_model(tiny_model, build_peft_config(recipe.adapter)).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    tokens = 256
    ids = torch.randint(4, model.config.vocab_size, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model(input_ids=ids, labels=ids)
    shape = model_shape(recipe)
    # The fp32 logits row counts 3 vocab-sized values per token; only log-softmax is saved in forward.
    predicted = tokens * (activation_bytes_per_token(shape, 4, False, False) - 2 * 4 * shape.vocab)
    assert sum(saved.values()) == pytest.approx(predicted, rel=0.35)


def test_sharding_quantization_and_checkpointing(recipe: Any) -> None:
    shape = model_shape(recipe)
    one = rows(estimate(recipe, shape, device="cuda"))
    fsdp = rows(estimate(recipe, shape, gpus=4, strategy="fsdp"))
    zero2 = rows(estimate(recipe, shape, gpus=4, strategy="zero2"))
    ddp = rows(estimate(recipe, shape, gpus=4, strategy="ddp"))
    assert fsdp["base weights"] == one["base weights"] // 4 and "gathered layers" in fsdp
    assert zero2["base weights"] == one["base weights"]
    assert zero2["optimizer states"] == pytest.approx(one["optimizer states"] / 4, abs=1)
    assert ddp["DDP gradient buckets"] == ddp["gradients"] == one["gradients"]

    checkpointed = estimate(recipe, shape, device="cuda", gradient_checkpointing=True)
    assert rows(checkpointed)["activations"] < one["activations"]

    four_bit = load_recipe(str(recipe.path), ["model.quantization=4bit"])
    quantized = rows(estimate(four_bit, model_shape(four_bit), device="cpu"))["base weights"]
    fp32 = shape.quantizable * 4 + (shape.params - shape.quantizable) * 4
    assert quantized == int(
        shape.quantizable * (0.5 + 1 / 64 + 4 / (64 * 256)) + (shape.params - shape.quantizable) * 4
    )
    assert quantized < fp32


def test_full_finetuning_trains_every_weight(make_recipe: Any) -> None:
    full = load_recipe(str(make_recipe(adapter={"method": "full"})))
    shape = model_shape(full)
    plan = rows(estimate(full, shape, device="cpu"))
    assert shape.trainable == shape.params
    assert "adapter weights" not in plan
    assert plan["gradients"] == shape.params * 4 and plan["optimizer states"] == shape.params * 8


def test_propose_fits_the_budget_and_keeps_the_global_batch(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(train={"batch_size": 8, "grad_accum": 2, "max_length": 512})))
    shape = model_shape(recipe)
    as_written = estimate(recipe, shape, device="cpu")
    smallest = estimate(recipe, shape, device="cpu", batch_size=1, gradient_checkpointing=True)
    budget = (as_written.total + smallest.total) // 2
    fit = propose(recipe, shape, budget, gpus=2, device="cpu")
    assert fit is not None and fit.total <= budget < as_written.total
    assert fit.batch_size * fit.grad_accum * 2 >= 16
    assert propose(recipe, shape, smallest.total - 1, device="cpu") is None


def test_cli_prints_breakdown_and_proposal(make_recipe: Any) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    path = make_recipe(train={"batch_size": 8, "max_length": 512})
    recipe = load_recipe(str(path))
    shape = model_shape(recipe)
    as_written = estimate(recipe, shape, gpus=2, strategy="zero3")
    smallest = estimate(recipe, shape, gpus=2, strategy="zero3", batch_size=1, gradient_checkpointing=True)
    budget = (as_written.total + smallest.total) // 2
    fit = propose(recipe, shape, budget, gpus=2, strategy="zero3")
    args = ["plan", str(path), "--gpu-memory", f"{budget}B", "--gpus", "2", "--strategy", "zero3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "optimizer states" in output and "gathered layers" in output
    assert f"total │ {as_written.total / GIB:.2f}" in output
    assert f"train.batch_size={fit.batch_size} train.grad_accum={fit.grad_accum}" in output

    bad = CliRunner().invoke(app, ["plan", str(path), "--strategy", "zero9"])
    assert bad.exit_code != 0 and "zero9" in str(bad.exception)


@pytest.mark.parametrize(("native", "cpu_bytes"), [(True, 2), (False, 4)])
def test_native_dtype_plans_bf16_where_bf16_is_native(
    recipe: Any, monkeypatch: pytest.MonkeyPatch, native: bool, cpu_bytes: int
) -> None:
    """model.dtype native: bf16 weights on a GPU target, and on a CPU target exactly where bf16 is native."""
    import pipeline.models.precision

    monkeypatch.setattr(pipeline.models.precision, "bf16_is_native", lambda: native)
    native_recipe = load_recipe(str(recipe.path), ["model.dtype=native"])
    shape = model_shape(native_recipe)
    assert rows(estimate(native_recipe, shape, device="cpu"))["base weights"] == shape.params * cpu_bytes
    assert rows(estimate(native_recipe, shape, device="cuda"))["base weights"] == shape.params * 2


def test_preference_stages_double_the_rows_and_full_dpo_keeps_a_reference(make_recipe: Any) -> None:
    sft = load_recipe(str(make_recipe(train={"batch_size": 4, "max_length": 64})))
    dpo = load_recipe(str(make_recipe(name="dpo", train={"stage": "dpo", "batch_size": 4, "max_length": 64})))
    shape = model_shape(sft)
    assert (
        rows(estimate(dpo, shape, device="cpu"))["activations"]
        == 2 * rows(estimate(sft, shape, device="cpu"))["activations"]
    )
    assert "reference model" not in rows(estimate(dpo, shape, device="cpu"))  # LoRA: the adapter is disabled
    full = load_recipe(str(make_recipe(name="full", adapter={"method": "full"}, train={"stage": "dpo"})))
    full_rows = rows(estimate(full, model_shape(full), device="cpu"))
    assert full_rows["reference model"] == full_rows["base weights"]
    precomputed = load_recipe(
        str(
            make_recipe(
                name="pre",
                adapter={"method": "full"},
                train={"stage": "dpo"},
                dpo={"precompute_ref_log_probs": True},
            )
        )
    )
    assert "reference model" not in rows(estimate(precomputed, model_shape(precomputed), device="cpu"))
