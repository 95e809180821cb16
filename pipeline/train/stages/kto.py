"""Glue around trl's KTOTrainer: the KTOConfig a recipe implies, and the trainer built from it.

KTO learns from single completions labelled desirable or not. The reference is handled as for DPO
(pipeline.train.dpo): the adapter-disabled base, the parent of a continued adapter, or for full fine-tuning
a second copy of the base unless kto.precompute_ref_log_probs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import Recipe
from pipeline.train.arguments import training_arguments

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from trl import KTOConfig, KTOTrainer


def build_kto_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> KTOConfig:
    """The trl KTOConfig for a recipe (train.stage: kto); checkpoints and logs go under run_dir."""
    from trl import KTOConfig

    kto = recipe.kto_settings
    return KTOConfig(
        **training_arguments(recipe, run_dir, dry_run),
        max_length=recipe.train.max_length,
        beta=kto.beta,
        loss_type=kto.loss_type,
        desirable_weight=kto.desirable_weight,
        undesirable_weight=kto.undesirable_weight,
        precompute_ref_log_probs=kto.precompute_ref_log_probs,
        disable_dropout=True,  # as for DPO: policy = reference at step 0
    )


def build_kto_trainer(
    recipe: Recipe,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_dataset: Dataset,
    eval_dataset: Dataset | None,
    callbacks: list[Any] | None = None,
) -> KTOTrainer:
    """A KTOTrainer over the recipe's labelled completions with its LoRA config (or the continued adapter)."""
    from accelerate.utils import is_peft_model
    from trl import KTOTrainer

    from pipeline.models.adapters import peft_config_for
    from pipeline.train.dpo import drop_reference_adapter, reference_copy
    from pipeline.train.flop_count import CachedFlopCount
    from pipeline.train.patches.registry import record
    from pipeline.train.patches.trl_lm_head import score_trained_positions_only

    score_trained_positions_only(recipe.train.score_trained_only)
    record("packed_sdpa", False, "trl's KTO collator pads its rows")
    full = recipe.adapter.method == "full"

    class PipelineKTOTrainer(CachedFlopCount, KTOTrainer):  # type: ignore[misc]
        def train(self, *args: Any, **kwargs: Any) -> Any:
            output = super().train(*args, **kwargs)
            drop_reference_adapter(self.model)  # trl's frozen copy of a continued adapter is not saved
            return output

    return PipelineKTOTrainer(
        model=model,
        ref_model=reference_copy(recipe, recipe.kto_settings.precompute_ref_log_probs),
        args=build_kto_config(recipe, run_dir),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=None if is_peft_model(model) or full else peft_config_for(recipe, model, tokenizer),
        callbacks=callbacks,
    )
