"""Translate an AdapterSpec into a peft LoraConfig (LoRA, DoRA, rsLoRA) or None for full fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.recipe import AdapterSpec

if TYPE_CHECKING:
    from peft import LoraConfig

INIT_WEIGHTS = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "loftq": "loftq"}


def build_peft_config(spec: AdapterSpec) -> LoraConfig | None:
    """The peft config for the recipe's adapter; None means full fine-tuning."""
    if spec.method == "full":
        return None
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        modules_to_save=list(spec.modules_to_save) or None,
        use_dora=spec.use_dora,
        use_rslora=spec.use_rslora,
        init_lora_weights=INIT_WEIGHTS[spec.init],
        bias="none",
    )
