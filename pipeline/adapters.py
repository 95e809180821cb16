"""Translate an AdapterSpec into a peft LoraConfig (LoRA, DoRA, rsLoRA) or None for full fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.recipe import AdapterSpec, Recipe

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
    spec: AdapterSpec, trainable_tokens: dict[str, list[int]] | None = None
) -> LoraConfig | None:
    """The peft config for the recipe's adapter; None means full fine-tuning.

    trainable_tokens maps embedding module names to token ids whose rows are trained and saved with
    the adapter (peft's trainable tokens), used for special tokens the recipe adds.
    """
    if spec.method == "full":
        return None
    if spec.init in UNSUPPORTED_INIT:
        raise ValueError(
            f"adapter.init '{spec.init}': {UNSUPPORTED_INIT[spec.init]}; use default or gaussian"
        )
    from peft import LoraConfig

    modules_to_save = list(spec.modules_to_save) or None
    return LoraConfig(
        task_type="CAUSAL_LM",
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        modules_to_save=modules_to_save,
        trainable_token_indices=trainable_tokens or None,
        # Keeps a trained embedding and a tied lm_head one tensor, so merging and reloading agree.
        ensure_weight_tying=bool(modules_to_save or trainable_tokens),
        use_dora=spec.use_dora,
        use_rslora=spec.use_rslora,
        init_lora_weights=INIT_WEIGHTS[spec.init],
        bias="none",
    )


def embedding_module_names(model: PreTrainedModel) -> list[str]:
    """Short names (e.g. embed_tokens, lm_head) of the model's input and output embedding modules."""
    wanted = [model.get_input_embeddings(), model.get_output_embeddings()]
    names = []
    for module in wanted:
        name = next((n for n, m in model.named_modules() if m is module), None)
        if name and name.split(".")[-1] not in names:
            names.append(name.split(".")[-1])
    return names


def trainable_token_targets(
    model: PreTrainedModel, token_ids: list[int], skip: list[str]
) -> dict[str, list[int]]:
    """{embedding module: token ids} for peft's trainable tokens, leaving out modules trained in full."""
    if not token_ids:
        return {}
    return {name: list(token_ids) for name in embedding_module_names(model) if name not in skip}


def peft_config_for(
    recipe: Recipe, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> LoraConfig | None:
    """The recipe's peft config for this model, training the rows of any added special tokens."""
    from pipeline.modeling import new_token_ids

    targets = trainable_token_targets(
        model, new_token_ids(recipe.model, tokenizer), list(recipe.adapter.modules_to_save)
    )
    return build_peft_config(recipe.adapter, targets)
