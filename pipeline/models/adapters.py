"""Translate an AdapterSpec into a peft LoraConfig (LoRA, DoRA, rsLoRA) or None for full fine-tuning."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from pipeline.config.schema import AdapterSpec, Recipe

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

INIT_WEIGHTS = {"default": True, "gaussian": "gaussian"}
# peft's PiSSA and LoftQ rewrite the base weights; the saved adapter then only reproduces the trained
# model on that rewritten base, which breaks reloading, merging and serving on the published base.
UNSUPPORTED_INIT = {
    "pissa": "PiSSA rewrites the base weights, so the adapter would not reload on the plain base",
    "loftq": "LoftQ rewrites the base weights, so the adapter would not reload on the plain base",
}


def build_peft_config(
    spec: AdapterSpec, extra_modules_to_save: list[str] | None = None, task_type: str = "CAUSAL_LM"
) -> LoraConfig | None:
    """The peft config for the recipe's adapter; None means full fine-tuning.

    extra_modules_to_save: modules trained in full on top of the recipe's (the embeddings, when special
    tokens were added); task_type: peft's (SEQ_CLS for a reward model, whose `score` head peft then trains in
    full).
    """
    if spec.method == "full":
        return None
    if spec.init in UNSUPPORTED_INIT:
        raise ValueError(
            f"adapter.init '{spec.init}': {UNSUPPORTED_INIT[spec.init]}; use default or gaussian"
        )
    targets = [spec.target_modules] if isinstance(spec.target_modules, str) else spec.target_modules
    if "lm_head" in targets:
        raise ValueError(
            "adapter.target_modules includes lm_head, but TRL's fused LM head multiplies by the base weight, "
            "so a LoRA there would never train; list lm_head under adapter.modules_to_save instead"
        )
    from peft import LoraConfig

    modules_to_save = list(dict.fromkeys([*spec.modules_to_save, *(extra_modules_to_save or [])])) or None
    return LoraConfig(
        task_type=task_type,
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        modules_to_save=modules_to_save,
        # Keeps a trained embedding and a tied lm_head one tensor, so merging and reloading agree.
        ensure_weight_tying=bool(modules_to_save),
        use_dora=spec.use_dora,
        use_rslora=spec.use_rslora,
        init_lora_weights=INIT_WEIGHTS[spec.init],
        bias="none",
    )


@lru_cache(maxsize=4)
def all_linear_targets(
    name: str, revision: str | None = None, trust_remote_code: bool = False
) -> frozenset[str]:
    """Short names (q_proj, ...) of the layers adapter.target_modules: all-linear puts LoRA on: every linear
    (or GPT-2 Conv1D) layer but the output head, as peft picks them; built from config.json on torch's meta
    device, so no weight loads."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from pipeline.models.assets import resolve_model

    folder = str(resolve_model(name, revision))
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    head = model.get_output_embeddings()
    return frozenset(
        n.rsplit(".", 1)[-1]
        for n, m in model.named_modules()
        if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head
    )


def embedding_module_names(model: PreTrainedModel) -> list[str]:
    """Short names (e.g. embed_tokens, lm_head) of the model's input and output embedding modules."""
    names: list[str] = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        name = next((n for n, m in model.named_modules() if m is module), None)
        if name and name.split(".")[-1] not in names:
            names.append(name.split(".")[-1])
    return names


def peft_config_for(
    recipe: Recipe, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> LoraConfig | None:
    """The recipe's peft config for this model; added special tokens train the embeddings in full.

    peft's trainable tokens would train only the new rows, but trl's fused LM head reads lm_head.weight
    directly, bypassing that wrapper (and failing on it), so the embeddings go to modules_to_save.
    """
    from pipeline.models.heads import REWARD_TASK, is_reward_model
    from pipeline.models.loading import new_token_ids

    extra = embedding_module_names(model) if new_token_ids(recipe.model, tokenizer) else []
    return build_peft_config(recipe.adapter, extra, REWARD_TASK if is_reward_model(model) else "CAUSAL_LM")
