"""KTO (train.stage: kto) over trl's KTOTrainer: learns from single completions labelled desirable or not.

The reference is handled as for DPO (pipeline.train.stages.reference).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.schema import Recipe
from pipeline.config.stages import KTOSpec
from pipeline.train.arguments import preference_arguments
from pipeline.train.stages.reference import with_reference
from pipeline.train.stages.registry import Stage

if TYPE_CHECKING:
    from trl import KTOConfig


def build_kto_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> KTOConfig:
    """The trl KTOConfig for a recipe (train.stage: kto); checkpoints and logs go under run_dir."""
    from trl import KTOConfig

    kto = recipe.settings_of(KTOSpec)
    return KTOConfig(
        **preference_arguments(recipe, run_dir, dry_run),
        beta=kto.beta,
        loss_type=kto.loss_type,
        desirable_weight=kto.desirable_weight,
        undesirable_weight=kto.undesirable_weight,
        precompute_ref_log_probs=kto.precompute_ref_log_probs,
    )


STAGE = Stage(
    name="kto",
    trainer="KTOTrainer",
    data="labelled",
    rows_per_example=2,  # each completion and a mismatched one for the KL estimate
    evaluation="labelled",
    card="KTO on completions labelled desirable or not",
    build_config=build_kto_config,
    trainer_inputs=with_reference,
    padded=lambda recipe: "trl's KTO collator pads its rows",
    reference=True,
)
