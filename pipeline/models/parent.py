"""Start from an existing LoRA adapter (model.adapter): find it, check it fits the recipe, put it on the base.

A run that continues a parent adapter trains the parent's LoRA weights further (its rank, alpha and targets,
not the recipe's adapter section) and records the parent in its manifest and model card. Preference stages
use the parent as their reference model (TRL keeps a frozen copy of the adapter weights only).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import ModelSpec, Recipe
from pipeline.errors import AssetError, PipelineError, RecipeError
from pipeline.models.artifacts import resolve_target
from pipeline.runs.manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from transformers import PreTrainedModel

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class Parent:
    """The adapter a run starts from: its folder, the run folder it came from (if any) and what it says."""

    target: str
    adapter_dir: Path
    run_dir: Path | None
    base: str
    peft_type: str


def resolve_parent(spec: ModelSpec, source: str, beside: Path | None = None) -> Parent | None:
    """The recipe's model.adapter resolved and checked without loading weights; None when it names none.

    source: the recipe file (for messages); beside: the recipe's folder, where a relative path may also be."""
    if not spec.adapter:
        return None
    target = spec.adapter
    if beside is not None and not Path(target).expanduser().exists() and (beside / target).exists():
        target = str(beside / target)
    try:
        ref = resolve_target(target)
    except AssetError as exc:
        raise RecipeError(f"{source}: model.adapter '{spec.adapter}': {exc}") from None
    if ref.adapter_dir is None:
        raise RecipeError(
            f"{source}: model.adapter '{spec.adapter}' is a full model, not a LoRA adapter; point it at a "
            "LoRA run or adapter folder, or use its folder as model.name."
        )
    config = json.loads((ref.adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if not (ref.adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise RecipeError(
            f"{source}: model.adapter '{spec.adapter}' has no {ADAPTER_WEIGHTS}; point it at a finished run."
        )
    peft_type = str(config.get("peft_type", "LORA"))
    if peft_type != "LORA":
        raise RecipeError(
            f"{source}: model.adapter '{spec.adapter}' is a {peft_type} adapter; only LoRA adapters continue."
        )
    if _same_model(ref.base.name) != _same_model(spec.name):
        raise RecipeError(
            f"{source}: model.adapter '{spec.adapter}' was trained on '{ref.base.name}' but model.name is "
            f"'{spec.name}'; set model.name: {ref.base.name}"
        )
    return Parent(spec.adapter, ref.adapter_dir, ref.run_dir, ref.base.name, peft_type)


def parent_of(recipe: Recipe) -> Parent | None:
    """resolve_parent for a recipe: messages name its file, relative paths may sit beside it."""
    return resolve_parent(
        recipe.model, str(recipe.path or recipe.name), recipe.path.parent if recipe.path else None
    )


def _same_model(name: str) -> str:
    """A local model folder and the same folder written another way compare equal; Hub ids as they are."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def attach_parent(model: PreTrainedModel, parent: Parent) -> PreTrainedModel:
    """The base with the parent's adapter loaded as the trainable 'default' adapter (a peft PeftModel)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(parent.adapter_dir), is_trainable=True)


def parent_info(parent: Parent | None) -> dict[str, Any] | None:
    """What the manifest records of the parent: where it is, its weights' SHA-256 and the parent run's recipe."""
    if parent is None:
        return None
    weights = parent.adapter_dir / ADAPTER_WEIGHTS
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    info: dict[str, Any] = {
        "adapter": parent.target,
        "adapter_dir": str(parent.adapter_dir.resolve()),
        "run": str(parent.run_dir.resolve()) if parent.run_dir else None,
        "sha256": digest.hexdigest(),
    }
    if parent.run_dir is not None and (parent.run_dir / MANIFEST).is_file():
        try:
            info["recipe_name"] = Manifest.read(parent.run_dir).recipe_name
        except PipelineError:
            info["recipe_name"] = None
    return info
