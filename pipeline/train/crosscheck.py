"""The library cross-check: build trl's SFTConfig and peft's LoraConfig from a recipe before any weight loads.

`pipeline validate` and `finetune` call it explicitly; the recipe loader itself knows nothing of trl or peft.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config.schema import Recipe
from pipeline.errors import RecipeError


def check_against_libraries(recipe: Recipe) -> None:
    """Build trl's config for the recipe's stage (SFTConfig, DPOConfig) and peft's LoraConfig now, so a bad
    combination fails before weights load."""
    from pipeline.models.adapters import build_peft_config
    from pipeline.train.stages.build import build_stage_config

    source = str(recipe.path or recipe.name)
    try:
        build_stage_config(recipe, Path(recipe.train.output_dir) / "_validate", dry_run=True)
        build_peft_config(recipe.adapter)
    except (ValueError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecipeError(f"{source}: rejected by trl/peft: {first_line}") from None
