"""Direct preference optimization (train.stage: dpo) over trl's DPOTrainer: the DPOConfig a recipe implies.

The reference is the adapter-disabled base, the parent of a continued adapter, or for full fine-tuning a
second copy of the base unless dpo.precompute_ref_log_probs (pipeline.train.stages.reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.schema import Recipe
from pipeline.config.stages import DPOSpec
from pipeline.train.arguments import preference_arguments
from pipeline.train.stages.reference import with_reference
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from trl import DPOConfig


def build_dpo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> DPOConfig:
    """The trl DPOConfig for a recipe (train.stage: dpo); checkpoints and logs go under run_dir."""
    from trl import DPOConfig

    dpo = recipe.settings_of(DPOSpec)
    return DPOConfig(
        **preference_arguments(recipe, run_dir, dry_run),  # dropout off: loss = ln 2 at step 0
        beta=dpo.beta,
        loss_type=list(dpo.loss_type),
        loss_weights=list(dpo.loss_weights) if dpo.loss_weights else None,
        label_smoothing=dpo.label_smoothing,
        precompute_ref_log_probs=dpo.precompute_ref_log_probs,
    )


STAGE = Stage(
    name="dpo",
    trainer="DPOTrainer",
    data="pairs",
    rows_per_example=2,  # chosen and rejected rows of every pair in one batch
    evaluation="pairs",
    card="direct preference optimization (DPO) on preference pairs",
    build_config=build_dpo_config,
    trainer_inputs=with_reference,
    padded=lambda recipe: "trl's DPO collator pads chosen and rejected rows",
    reference=True,
)
