"""A few real SFTTrainer steps on the tiny model: LoRA moves, the base does not, the adapter reloads exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.models.saving import save_adapter
from pipeline.train.stages.build import build_trainer


def _trained(make_recipe: Any, tmp_path: Path) -> tuple[Any, Any, dict[str, torch.Tensor], Path]:
    recipe = load_recipe(str(make_recipe(train={"max_steps": 3})))
    tokenizer = load_tokenizer(recipe.model)
    model = load_base_model(recipe.model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dataset = tokenize_records(load_splits(recipe.data).train, tokenizer, recipe.train)
    trainer = build_trainer(recipe, tmp_path / "run", model, tokenizer, dataset, None)
    trainer.train()
    adapter_dir = save_adapter(
        trainer.model, tokenizer, tmp_path / "run" / "adapter", save=trainer.save_model
    )
    return trainer.model, tokenizer, before, adapter_dir


def test_lora_trains_adapter_only_and_reloads(make_recipe: Any, tmp_path: Path, tiny_model_dir: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tokenizer, before, adapter_dir = _trained(make_recipe, tmp_path)
    state = model.state_dict()
    lora_b = [k for k in state if "lora_B" in k]
    assert lora_b, "no LoRA weights in the trained model"
    assert any(state[k].abs().sum() > 0 for k in lora_b), "LoRA B stayed at its zero init: nothing trained"
    for name, original in before.items():
        peft_name = next(
            k for k in state if k.endswith(name.replace(".weight", ".base_layer.weight")) or k.endswith(name)
        )
        assert torch.equal(state[peft_name], original), f"base weight {name} changed"

    files = {p.name for p in adapter_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= files
    assert not files & {"model.safetensors", "pytorch_model.bin", "training_args.bin"}, (
        "weights or pickles leaked"
    )
    assert any(p.name in ("chat_template.jinja", "tokenizer_config.json") for p in adapter_dir.iterdir())

    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir
    ).eval()
    model.eval()
    ids = tokenizer("What does json.dumps do?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_loss_is_on_assistant_tokens_only(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe()))
    tokenizer = load_tokenizer(recipe.model)
    row = tokenize_records(load_splits(recipe.data).train[:1], tokenizer, recipe.train)[0]
    trained = tokenizer.decode(
        [t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m]
    )
    assert trained.startswith("It serializes an object to a JSON string.<|im_end|>")
    assert "What does json.dumps do?" not in trained
