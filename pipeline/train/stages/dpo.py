"""Glue around trl's DPOTrainer: the DPOConfig a recipe implies, and the trainer built from it.

The reference model costs no second copy with LoRA: trl scores the reference with the adapter disabled
(the base), or, when the run continues an adapter (model.adapter), with a frozen copy of that adapter's
weights (the parent). Full fine-tuning loads a second copy of the base, or precomputes the reference
log-probabilities once (dpo.precompute_ref_log_probs) and keeps none.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import DPOConfig, DPOTrainer

# The name trl gives the frozen copy of a continued adapter that serves as the reference.
REFERENCE_ADAPTER = "ref"


def build_dpo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> DPOConfig:
    """The trl DPOConfig for a recipe (train.stage: dpo); checkpoints and logs go under run_dir."""
    from trl import DPOConfig

    dpo = recipe.dpo_settings
    return DPOConfig(
        **training_arguments(recipe, run_dir, dry_run),
        max_length=recipe.train.max_length,
        beta=dpo.beta,
        loss_type=list(dpo.loss_type),
        loss_weights=list(dpo.loss_weights) if dpo.loss_weights else None,
        label_smoothing=dpo.label_smoothing,
        precompute_ref_log_probs=dpo.precompute_ref_log_probs,
        # Dropout would make the policy differ from the reference at step 0 (loss != ln 2) for no gain.
        disable_dropout=True,
    )


def build_dpo_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> DPOTrainer:
    """A DPOTrainer over the recipe's pairs with its LoRA config; a model that already carries an adapter
    (model.adapter) trains it further against a frozen copy of it."""
    from accelerate.utils import is_peft_model

    from pipeline.models.adapters import peft_config_for
    from pipeline.train.patches.registry import record
    from pipeline.train.patches.trl_lm_head import score_trained_positions_only

    score_trained_positions_only(recipe.train.score_trained_only)
    record("packed_sdpa", False, "trl's DPO collator pads chosen and rejected rows")
    args = build_dpo_config(recipe, run_dir)
    mixed = bool(args.bf16 or args.fp16)
    record("skip_peft_input_casts", mixed and recipe.adapter.method != "full", "" if mixed else "no autocast")
    continued = is_peft_model(model)
    full = recipe.adapter.method == "full"
    return _trainer_class()(
        model=model,
        ref_model=reference_copy(recipe, recipe.dpo_settings.precompute_ref_log_probs),
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=None if continued or full else peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )


def _trainer_class() -> type[DPOTrainer]:
    """DPOTrainer whose adapters take their inputs as they come under autocast and add their updates in one
    multiply on CPU (see pipeline.train.sft), and which drops the frozen reference copy of a continued adapter
    once trained, so only the trained adapter is saved and evaluated."""
    from trl import DPOTrainer

    from pipeline.train.flop_count import CachedFlopCount
    from pipeline.train.sft import adapter_levers

    class PipelineDPOTrainer(CachedFlopCount, DPOTrainer):  # type: ignore[misc]
        def train(self, *args: Any, **kwargs: Any) -> Any:
            with adapter_levers(self.model, self.args):
                output = super().train(*args, **kwargs)
            drop_reference_adapter(self.model)
            return output

    return PipelineDPOTrainer


def reference_copy(recipe: Recipe, precomputed: bool) -> PreTrainedModel | None:
    """A second copy of the base as reference, needed only by full fine-tuning without precomputed
    reference log-probs (trl would otherwise load it from model.name, which may be a Hub id offline)."""
    if recipe.adapter.method != "full" or precomputed:
        return None
    from pipeline.models.loading import load_base_model

    return load_base_model(recipe.model)


def drop_reference_adapter(model: Any) -> None:
    """Delete trl's frozen reference copy of a continued adapter, if the model carries one."""
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict) and REFERENCE_ADAPTER in configs:
        model.delete_adapter(REFERENCE_ADAPTER)
