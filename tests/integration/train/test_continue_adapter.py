"""model.adapter: a run starts from an earlier run's LoRA adapter, trains it further and records its parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.workflow import finetune, prepare


def test_sft_continues_a_parent_run_and_records_it(make_recipe: Any) -> None:
    parent = finetune(load_recipe(str(make_recipe(name="parent", eval={"enabled": False}))))
    parent_weights = load_file(str(parent.run_dir / "adapter" / "adapter_model.safetensors"))
    # The recipe's adapter section says r=4; the parent's rank wins, so r here is deliberately different.
    child_recipe = make_recipe(
        name="child", model={"adapter": str(parent.run_dir)}, adapter={"r": 8}, train={"max_steps": 2}
    )
    child = finetune(load_recipe(str(child_recipe)))

    config = json.loads((child.run_dir / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4
    child_weights = load_file(str(child.run_dir / "adapter" / "adapter_model.safetensors"))
    assert child_weights.keys() == parent_weights.keys()
    changed = [k for k in parent_weights if not torch.equal(parent_weights[k], child_weights[k])]
    assert changed, "training further changed no LoRA weight"
    # lora_B starts at zero in a fresh adapter; continued from the parent, the child's differs from zero
    # by the parent's training plus its own, and the first steps start at the parent's values.
    manifest = json.loads((child.run_dir / "manifest.json").read_text())
    assert manifest["parent"]["run"] == str(parent.run_dir.resolve())
    assert manifest["parent"]["recipe_name"] == "parent"
    assert len(manifest["parent"]["sha256"]) == 64
    card = (child.run_dir / "README.md").read_text()
    assert f"continues the adapter `{parent.run_dir}`" in card and parent.run_dir.name in card
    # The base metrics of a continued run are the parent's: lower perplexity than the untouched base.
    assert child.metrics["base"]["perplexity"] < _base_perplexity(make_recipe)


def _base_perplexity(make_recipe: Any) -> float:
    run = finetune(load_recipe(str(make_recipe(name="fresh", train={"max_steps": 1}))))
    return float(run.metrics["base"]["perplexity"])


def test_validate_rejects_a_missing_or_full_parent(make_recipe: Any, tmp_path: Path) -> None:
    missing = load_recipe(str(make_recipe(name="missing", model={"adapter": str(tmp_path / "nowhere")})))
    with pytest.raises(RecipeError, match=r"model\.adapter '.*nowhere'"):
        prepare(missing)
    full = finetune(
        load_recipe(
            str(
                make_recipe(
                    name="full", adapter={"method": "full"}, eval={"enabled": False}, train={"max_steps": 1}
                )
            )
        )
    )
    onto_full = load_recipe(str(make_recipe(name="onto", model={"adapter": str(full.run_dir)})))
    with pytest.raises(RecipeError, match="is a full model, not a LoRA adapter"):
        prepare(onto_full)
