"""SimPO (train.stage: simpo) over trl's experimental CPOTrainer with loss_type simpo and no behaviour-cloning
term (cpo_alpha 0): a margin between the length-normalised log-probabilities of the chosen and rejected
answers, in one pass per pair and without a reference.

trl.experimental may move between releases: pipeline.train.stages.experimental checks the API first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import SimPOSpec
from pipeline.train.arguments import preference_arguments
from pipeline.train.stages.experimental import API, experimental_config, pairs_only
from pipeline.train.stages.registry import Stage


def build_simpo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> Any:
    """trl's CPOConfig of pure SimPO for a recipe (train.stage: simpo); checkpoints and logs go under run_dir."""
    simpo = recipe.settings_of(SimPOSpec)
    config = experimental_config("simpo")  # one-line ValueError when trl moved its API
    return config(
        **preference_arguments(recipe, run_dir, dry_run),
        remove_unused_columns=False,  # trl's pair collator reads the raw columns (it warns and sets it otherwise)
        loss_type="simpo",
        beta=simpo.beta,
        simpo_gamma=simpo.simpo_gamma,
        cpo_alpha=0.0,  # CPO's NLL term on the chosen answers off: SimPO as its paper defines it
    )


STAGE = Stage(
    name="simpo",
    trainer=API["simpo"][0],
    data="pairs",
    rows_per_example=2,  # chosen and rejected rows of every pair in one batch
    evaluation="pairs",
    card="simple preference optimization (SimPO) on preference pairs",
    build_config=build_simpo_config,
    trainer_inputs=pairs_only,
    padded=lambda recipe: "trl's CPO collator pads chosen and rejected rows",
    fused_lm_head=False,
)
