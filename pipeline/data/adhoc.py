"""A data file named on the command line becomes a recipe: the base recipe with that file as its train split."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.loader import load_recipe
from pipeline.config.schema import Recipe, SourceSpec
from pipeline.data.sources import SUFFIXES
from pipeline.errors import DataError


def recipe_for(
    target: str, base: str = "lora-small", eval_file: str | None = None, overrides: list[str] | None = None
) -> Recipe:
    """The recipe named by target, or, when target is a data file or folder, `base` with that data as train
    (and eval_file, if given, as eval; otherwise no eval split); dotted overrides apply to either."""
    path = Path(target)
    is_data = path.is_dir() or (path.is_file() and path.suffix.lower() in SUFFIXES)
    if path.suffix.lower() in SUFFIXES and not path.exists():
        raise DataError(
            f"{target}: data file not found; give an existing data file ({', '.join(SUFFIXES)}) or a recipe."
        )
    if not is_data:
        if eval_file:
            raise DataError(
                f"--eval {eval_file}: only used with a data file; a recipe names its own eval data."
            )
        return load_recipe(target, overrides)
    recipe = load_recipe(base, overrides)
    evaluation = [SourceSpec(path=str(Path(eval_file).resolve()))] if eval_file else []
    data = recipe.data.model_copy(
        update={"train": [SourceSpec(path=str(path.resolve()))], "eval": evaluation, "eval_size": 0}
    )
    return recipe.model_copy(update={"data": data})
