"""The reference model of the stages that have one (DPO, KTO; GRPO with grpo.beta > 0).

The reference costs no second copy with LoRA: trl scores it with the adapter disabled (the base), or, when the
run continues an adapter (model.adapter), with a frozen copy of that adapter's weights (the parent). Full
fine-tuning loads a second copy of the base, or precomputes the reference log-probabilities once
(precompute_ref_log_probs) and keeps none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The name trl gives the frozen copy of a continued adapter that serves as the reference.
REFERENCE_ADAPTER = "ref"


def reference_copy(recipe: Recipe, precomputed: bool) -> PreTrainedModel | None:
    """A second copy of the base as reference, needed only by full fine-tuning without precomputed
    reference log-probs (trl would otherwise load it from model.name, which may be a Hub id offline)."""
    if recipe.adapter.method != "full" or precomputed:
        return None
    from pipeline.models.loading import load_base_model

    return load_base_model(recipe.model)


def with_reference(recipe: Recipe, model: Any, train: Any, eval_dataset: Any) -> dict[str, Any]:
    """Trainer inputs of a stage with a reference model (Stage.trainer_inputs of DPO and KTO): the data sets
    and the reference (None: trl scores the adapter-disabled model, or the reference log-probs precomputed)."""
    settings = recipe.stage_settings
    precomputed = bool(getattr(settings, "precompute_ref_log_probs", False))
    return {
        "ref_model": reference_copy(recipe, precomputed),
        "train_dataset": train,
        "eval_dataset": eval_dataset,
    }


def drop_reference_adapter(model: Any) -> None:
    """Delete trl's frozen reference copy of a continued adapter, if the model carries one."""
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict) and REFERENCE_ADAPTER in configs:
        model.delete_adapter(REFERENCE_ADAPTER)
