"""Adapter specs -> peft configs, quantization settings, added special tokens, and the GPU recipes."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config.loader import RECIPES_DIR, load_recipe
from pipeline.config.schema import AdapterSpec, ModelSpec
from pipeline.errors import RecipeError
from pipeline.models.adapters import build_peft_config, embedding_module_names, peft_config_for
from pipeline.models.loading import load_base_model, load_tokenizer, new_token_ids, quantization_config
from pipeline.train.crosscheck import check_against_libraries


def test_lora_options_reach_peft() -> None:
    spec = AdapterSpec(
        r=8,
        alpha=16,
        dropout=0.1,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["lm_head"],
        use_rslora=True,
        init="gaussian",
    )
    config = build_peft_config(spec)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.1)
    assert config.target_modules == {"q_proj", "v_proj"}
    assert config.modules_to_save == ["lm_head"] and config.ensure_weight_tying
    assert config.use_rslora and not config.use_dora and config.init_lora_weights == "gaussian"
    assert config.task_type == "CAUSAL_LM" and config.bias == "none"


def test_rslora_scales_by_sqrt_rank(tiny_model: Any) -> None:
    from peft import get_peft_model

    model = get_peft_model(tiny_model, build_peft_config(AdapterSpec(r=16, alpha=32, use_rslora=True)))
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    assert math.isclose(layer.scaling["default"], 32 / math.sqrt(16))


def test_dora_adds_magnitude_vectors(tiny_model: Any) -> None:
    from peft import get_peft_model

    model = get_peft_model(tiny_model, build_peft_config(AdapterSpec(r=4, use_dora=True)))
    names = [n for n, _ in model.named_parameters() if "lora_magnitude_vector" in n]
    assert len(names) == 2 * 7  # every linear layer of both blocks (q, k, v, o, gate, up, down)


def test_full_fine_tuning_has_no_peft_config() -> None:
    assert build_peft_config(AdapterSpec(method="full", use_dora=True)) is None


@pytest.mark.parametrize("init", ["pissa", "loftq"])
def test_inits_that_rewrite_the_base_are_refused_at_validation(make_recipe: Any, init: str) -> None:
    with pytest.raises(RecipeError) as info:
        check_against_libraries(load_recipe(str(make_recipe(adapter={"init": init}))))
    message = str(info.value)
    assert (
        "\n" not in message and f"adapter.init '{init}'" in message and "use default or gaussian" in message
    )


def test_lora_on_lm_head_is_refused_with_the_fix(make_recipe: Any) -> None:
    """TRL's fused LM head multiplies by lm_head.weight, so a LoRA on lm_head would get no gradient."""
    with pytest.raises(RecipeError) as info:
        check_against_libraries(
            load_recipe(str(make_recipe(adapter={"target_modules": ["q_proj", "lm_head"]})))
        )
    message = str(info.value)
    assert "\n" not in message and "adapter.target_modules includes lm_head" in message
    assert "adapter.modules_to_save" in message


def test_4bit_settings_follow_the_recipe() -> None:
    spec = ModelSpec(quantization="4bit", bnb_4bit_quant_type="fp4", double_quant=False)
    config = quantization_config(spec, torch.float32)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "fp4"
    assert not config.bnb_4bit_use_double_quant and config.bnb_4bit_compute_dtype == torch.float32
    assert quantization_config(ModelSpec(), torch.float32) is None
    assert quantization_config(ModelSpec(quantization="8bit"), torch.float32).load_in_8bit


def test_4bit_base_loads_and_keeps_the_exact_cpu_path(tiny_model_dir: Path) -> None:
    import bitsandbytes as bnb

    model = load_base_model(ModelSpec(name=str(tiny_model_dir), dtype="float32", quantization="4bit"))
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 14 and not any(m.support_avx512bf16_for_cpu for m in layers)
    with torch.no_grad():  # a 32-wide layer would fail on bitsandbytes' packed CPU path
        assert torch.isfinite(model.eval()(torch.tensor([[5, 6, 7]])).logits).all()


def test_added_special_tokens_grow_tokenizer_and_embeddings(tiny_model_dir: Path) -> None:
    spec = ModelSpec(name=str(tiny_model_dir), dtype="float32", add_special_tokens=["<tool>", "</tool>"])
    tokenizer = load_tokenizer(spec)
    ids = new_token_ids(spec, tokenizer)
    base_size = len(load_tokenizer(ModelSpec(name=str(tiny_model_dir))))
    assert ids == [base_size, base_size + 1]
    assert tokenizer("a <tool> b")["input_ids"].count(ids[0]) == 1  # one token, never split
    model = load_base_model(spec)
    assert model.get_input_embeddings().weight.shape[0] == base_size + 2
    assert model.get_output_embeddings().weight.shape[0] == base_size + 2
    assert embedding_module_names(model) == ["embed_tokens", "lm_head"]


def test_added_tokens_train_the_embeddings_in_full(make_recipe: Any, tiny_model_dir: Path) -> None:
    plain = load_recipe(str(make_recipe(adapter={"modules_to_save": ["lm_head"]})))
    spec = plain.model.model_copy(update={"add_special_tokens": ["<tool>"]})
    tokens = plain.model_copy(update={"model": spec})
    model = load_base_model(spec)
    assert peft_config_for(plain, model, load_tokenizer(plain.model)).modules_to_save == ["lm_head"]
    config = peft_config_for(tokens, model, load_tokenizer(spec))
    assert config.modules_to_save == ["lm_head", "embed_tokens"] and config.ensure_weight_tying


def _gpu_recipes() -> list[Path]:
    return sorted((RECIPES_DIR / "gpu").glob("*.yaml"))


def test_there_are_gpu_recipes_for_lora_qlora_and_full() -> None:
    methods = set()
    for path in _gpu_recipes():
        recipe = load_recipe(str(path))
        methods.add("qlora" if recipe.model.quantization == "4bit" else recipe.adapter.method)
    assert {"lora", "qlora", "full"} <= methods


@pytest.mark.parametrize("path", _gpu_recipes(), ids=lambda p: p.stem)
def test_gpu_recipe_validates_offline_and_names_its_gpu(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.models.assets

    def no_download(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("validation tried to resolve (download) the model")

    monkeypatch.setattr(pipeline.models.assets, "resolve_model", no_download)
    recipe = load_recipe(str(path))
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith(f"# {path.stem}:"), "first line: '# <name>: ...'"
    assert re.search(r"\b(H100|H200|A100|L4|A10G|RTX \d{4}|L40S)\b", path.read_text(encoding="utf-8")[:600])
    assert recipe.model.dtype == "bfloat16" and recipe.train.precision == "bf16"
    assert recipe.train.gradient_checkpointing
    assert recipe.train.batch_size * recipe.train.grad_accum >= 16
