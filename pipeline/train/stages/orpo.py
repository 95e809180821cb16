"""ORPO (train.stage: orpo) over trl's experimental ORPOTrainer: the chosen answers' language-model loss plus
an odds-ratio term that favours them over the rejected ones, in one pass per pair and without a reference.

trl.experimental may move between releases: pipeline.train.stages.experimental checks the API first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config.schema import Recipe
from pipeline.config.stages import ORPOSpec
from pipeline.train.arguments import preference_arguments
from pipeline.train.stages.experimental import API, experimental_config, pairs_only
from pipeline.train.stages.registry import Stage


def build_orpo_config(recipe: Recipe, run_dir: Path, dry_run: bool = False) -> Any:
    """trl's ORPOConfig for a recipe (train.stage: orpo); checkpoints and logs go under run_dir."""
    config = experimental_config("orpo")  # one-line ValueError when trl moved its API
    return config(
        **preference_arguments(recipe, run_dir, dry_run),
        remove_unused_columns=False,  # trl's pair collator reads the raw columns (it warns and sets it otherwise)
        beta=recipe.settings_of(ORPOSpec).beta,
    )


STAGE = Stage(
    name="orpo",
    trainer=API["orpo"][0],
    data="pairs",
    rows_per_example=2,  # chosen and rejected rows of every pair in one batch
    evaluation="pairs",
    card="odds ratio preference optimization (ORPO) on preference pairs",
    build_config=build_orpo_config,
    trainer_inputs=pairs_only,
    padded=lambda recipe: "trl's ORPO collator pads chosen and rejected rows",
    fused_lm_head=False,
)
