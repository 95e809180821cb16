"""Post-training checks: reload on a fresh base, no full weights in an adapter, warnings; special tokens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import CONVERSATIONS, write_jsonl
from safetensors.torch import load_file, save_file

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import AssetError
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.models.merge import merge_run
from pipeline.models.probes import compare_logits
from pipeline.models.saving import save_adapter
from pipeline.train.checks import adapter_file_problems, run_checks, serving_warnings
from pipeline.train.stages.build import build_trainer
from pipeline.workflow import finetune

NO_EVAL = {"enabled": False}


def _train(recipe_path: Path, run_dir: Path) -> tuple[Any, Any, Any, Path]:
    recipe = load_recipe(str(recipe_path))
    tokenizer = load_tokenizer(recipe.model)
    dataset = tokenize_records(load_splits(recipe.data).train, tokenizer, recipe.train)
    trainer = build_trainer(recipe, run_dir, load_base_model(recipe.model), tokenizer, dataset, None)
    trainer.train()
    return (
        trainer.model,
        tokenizer,
        recipe,
        save_adapter(trainer.model, tokenizer, run_dir / "adapter", save=trainer.save_model),
    )


def test_tampered_adapter_fails_the_reload_check(make_recipe: Any, tmp_path: Path) -> None:
    model, tokenizer, recipe, adapter = _train(make_recipe(), tmp_path / "run")
    checks = run_checks(model, tokenizer, recipe, adapter)
    assert checks["reload"]["max_abs_diff"] == 0.0
    vllm = checks["vllm"]
    assert vllm["servable"] and vllm["problems"] == [] and vllm["dtype"] == "float32", vllm
    assert vllm["rank"] == recipe.adapter.r and vllm["max_lora_rank"] >= recipe.adapter.r
    assert vllm["command"] == f"pipeline serve --engine vllm {tmp_path / 'run'}"
    verified = " | ".join(checks["verified"])  # what was checked, not only what is wrong
    assert "adapter weights only" in verified and "plain peft on a fresh base" in verified
    assert f"accepts LoRA rank {recipe.adapter.r}" in verified and "float32 weights" in verified

    weights = load_file(adapter / "adapter_model.safetensors")
    save_file(
        {k: v * 1.5 if "lora_B" in k else v for k, v in weights.items()},
        adapter / "adapter_model.safetensors",
    )
    with pytest.raises(AssetError) as info:
        run_checks(model, tokenizer, recipe, adapter)
    message = str(info.value)
    assert "\n" not in message and "post-training check failed: reloading" in message
    assert str(tmp_path / "run" / "checks.json") in message
    report = json.loads((tmp_path / "run" / "checks.json").read_text())
    assert report["passed"] is False and report["reload"]["passed"] is False
    assert report["reload"]["relative_diff"] > report["reload"]["relative_tolerance"]


def test_full_weights_or_base_tensors_in_an_adapter_are_reported(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"modules_to_save": None}))
    lora = {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": torch.zeros(2, 4)}
    save_file(lora, adapter / "adapter_model.safetensors")
    assert adapter_file_problems(adapter, full=False) == []

    save_file(
        {**lora, "base_model.model.model.layers.0.mlp.up_proj.weight": torch.zeros(4, 4)},
        adapter / "adapter_model.safetensors",
    )
    (problem,) = adapter_file_problems(adapter, full=False)
    assert "1 base-model tensors" in problem and "up_proj.weight" in problem

    shutil.copy(tiny_model_dir / "model.safetensors", adapter / "model.safetensors")
    assert any(
        "model.safetensors: full-model weights" in p for p in adapter_file_problems(adapter, full=False)
    )
    assert adapter_file_problems(tiny_model_dir, full=True) == []
    assert adapter_file_problems(tmp_path, full=True) == [f"{tmp_path}: no model.safetensors written"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"r": 16}, []),
        ({"r": 32}, ["--max-lora-rank 32"]),
        ({"r": 8, "rank_pattern": {"q_proj": 100}}, ["LoRA rank 100", "--max-lora-rank 128"]),
        ({"r": 8, "use_dora": True}, ["vLLM does not serve DoRA", "pipeline merge RUN"]),
        (
            {"r": 8, "modules_to_save": ["lm_head"]},
            ["vLLM refuses adapters with modules_to_save (here: lm_head)"],
        ),
    ],
)
def test_serving_warnings_in_plain_words(config: dict, expected: list[str]) -> None:
    text = " ".join(serving_warnings(config, added_tokens=0, vocab=None))
    assert all(part in text for part in expected) and bool(text) is bool(expected)


def test_compare_logits_uses_a_dtype_tolerance() -> None:
    reference = torch.full((3, 5), 10.0)
    assert compare_logits(reference, reference + 5e-4, "float32")["passed"]
    assert not compare_logits(reference, reference + 5e-2, "float32")["passed"]
    assert compare_logits(reference, reference + 5e-2, "bfloat16")["passed"]
    assert compare_logits(reference, reference[:2], "float32") == {
        "passed": False,
        "reason": "logit shapes differ: (3, 5) vs (2, 5)",
    }


def test_added_special_tokens_train_reload_warn_and_merge(make_recipe: Any, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.models.artifacts import load_target

    tool_chats = [
        [
            {"role": "user", "content": "Call the tool."},
            {"role": "assistant", "content": "<tool> json.dumps </tool>"},
        ]
    ] * 8
    data = write_jsonl(tmp_path / "tools.jsonl", [{"messages": m} for m in tool_chats + CONVERSATIONS])
    path = make_recipe(
        model={"add_special_tokens": ["<tool>", "</tool>"]}, data={"train": str(data)}, eval=NO_EVAL
    )
    result = finetune(load_recipe(str(path)))
    checks, adapter = result.metrics["checks"], result.run_dir / "adapter"
    assert checks["passed"] and checks["reload"]["max_abs_diff"] <= 1e-5
    warnings = " ".join(checks["warnings"])
    assert "resized from 320 to 322 rows" in warnings and "embeddings of 2 added special tokens" in warnings
    assert "modules_to_save (here: embed_tokens, lm_head)" in warnings
    assert not checks["vllm"]["servable"] and "pipeline merge" in checks["vllm"]["command"]
    assert any("2 added tokens" in p for p in checks["vllm"]["problems"])
    assert not any(v.startswith("vLLM") for v in checks["verified"])

    names = load_file(adapter / "adapter_model.safetensors")
    assert names["base_model.model.model.embed_tokens.weight"].shape == (322, 32)  # saved in full
    assert names["base_model.model.lm_head.weight"].shape == (322, 32)
    assert load_tokenizer(load_recipe(str(path)).model, folder=adapter).convert_tokens_to_ids("<tool>") == 320

    loaded = load_target(str(result.run_dir))  # the resized base takes the adapter without size errors
    assert loaded.model.get_input_embeddings().weight.shape[0] == 322

    merged = merge_run(str(result.run_dir))
    assert merged.relative_diff <= 1e-4
    config = json.loads((merged.output / "config.json").read_text())
    assert config["vocab_size"] == 322
    # The new token was learned: after the prompt it outranks almost the whole vocabulary.
    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(merged.output),
        AutoTokenizer.from_pretrained(merged.output),
    )
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Call the tool."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        probs = model(**prompt).logits[0, -1].softmax(-1)
    assert int((probs > probs[320]).sum()) <= 3


def test_modules_to_save_are_saved_warned_about_and_merged(make_recipe: Any) -> None:
    path = make_recipe(adapter={"modules_to_save": ["lm_head"]}, eval=NO_EVAL)
    result = finetune(load_recipe(str(path)))
    checks = result.metrics["checks"]
    assert checks["passed"] and checks["files"]["problems"] == []
    assert any("modules_to_save (here: lm_head)" in w for w in checks["warnings"])
    names = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    assert "base_model.model.lm_head.weight" in names
    assert merge_run(str(result.run_dir)).relative_diff <= 1e-4


def test_checks_after_mixed_precision_run_the_model_as_a_reload_does(make_recipe: Any) -> None:
    """bf16 autocast in training wraps the model's forward; the checks after training take that wrapper off,
    so the trained fp32 model and its reload give identical logits (with the wrapper they differed by ~2e-3)."""
    path = make_recipe(train={"precision": "bf16"}, eval=NO_EVAL)
    result = finetune(load_recipe(str(path)))
    reload = result.metrics["checks"]["reload"]
    assert reload["passed"] is True and reload["max_abs_diff"] == 0.0
    assert json.loads((result.run_dir / "checks.json").read_text())["passed"] is True
