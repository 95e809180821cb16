"""Recipes: find a YAML file by name, apply dotted overrides, validate it into a typed `Recipe` with one-line errors.

The section models live in pipeline.config.schema and are re-exported here.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.config.schema import (
    AdapterSpec,
    DataSpec,
    EvalSpec,
    HubSpec,
    ModelSpec,
    Recipe,
    SourceSpec,
    Spec,
    TrainSpec,
)
from pipeline.config.strict_yaml import load_yaml_file, parse_yaml
from pipeline.config.templates import is_template_name
from pipeline.errors import RecipeError
from pipeline.files import path_exists

__all__ = [
    "RECIPES_DIR",
    "AdapterSpec",
    "DataSpec",
    "EvalSpec",
    "HubSpec",
    "ModelSpec",
    "Recipe",
    "SourceSpec",
    "Spec",
    "TrainSpec",
    "apply_overrides",
    "find_recipe",
    "list_recipe_files",
    "load_recipe",
    "parse_overrides",
    "validate_recipe_dict",
]

RECIPES_DIR = Path(os.environ.get("PIPELINE_RECIPES", Path(__file__).resolve().parents[2] / "recipes"))


def find_recipe(name_or_path: str) -> Path:
    """Find a recipe by name (recipes/<name>.yaml, searched recursively) or by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path_exists(path) or path.is_absolute():
        if not path_exists(path, "file"):
            raise RecipeError(
                f"{name_or_path}: recipe file not found; `pipeline recipes` lists the available ones."
            )
        return path
    matches = sorted(p for p in RECIPES_DIR.rglob(f"{name_or_path}.yaml") if "accelerate" not in p.parts)
    if matches:
        return matches[0]
    known = [p.stem for p in list_recipe_files()]
    hint = difflib.get_close_matches(name_or_path, known, n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else " `pipeline recipes` lists the available ones."
    raise RecipeError(f"recipe '{name_or_path}' not found in {RECIPES_DIR}.{suggestion}")


def list_recipe_files() -> list[Path]:
    """Every training recipe under recipes/ (accelerate configs excluded)."""
    return sorted(
        p for p in RECIPES_DIR.rglob("*.yaml") if "accelerate" not in p.relative_to(RECIPES_DIR).parts
    )


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ['train.max_steps=2', 'adapter.r=8'] into a nested dict with YAML-typed values."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise RecipeError(
                f"override '{item}' is not of the form section.field=value (e.g. train.max_steps=2)."
            )
        try:
            value = parse_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{item}' conflicts with another override of '{part}'.")
        node[leaf] = value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Recipe data with dotted overrides (['eval.max_examples=8']) merged over it."""
    return _merge(raw, parse_overrides(overrides)) if overrides else raw


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Allowed keys at the location of an 'extra_forbidden' error, for did-you-mean hints."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ()) or (annotation,)
        current = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields) if current else []


def _format_error(source: str, error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _field_names(Recipe, loc)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        fix = f"did you mean '{hint[0]}'?" if hint else f"allowed keys: {', '.join(allowed)}."
        return f"{source}: unknown key '{dotted}'; {fix}"
    if error["type"] == "missing":
        return f"{source}: {dotted} is required; add it to the recipe."
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    if isinstance(got, bool) and error["type"] != "bool_type":
        got_text = f" (got {got!r}: YAML reads yes/no/on/off as true/false)"
    if not loc:  # a check across sections names its fields itself
        return f"{source}: {message}."
    return f"{source}: {dotted}: {message}{got_text}."


def validate_recipe_dict(raw: Any, source: str, name: str = "recipe", path: Path | None = None) -> Recipe:
    """Validate plain data into a Recipe, reporting every problem at once, one line each."""
    if not isinstance(raw, dict):
        raise RecipeError(
            f"{source}: a recipe must be a YAML mapping with sections model, adapter, data, train, eval, hub."
        )
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError("\n".join(_format_error(source, e) for e in exc.errors())) from None
    recipe._name = name
    recipe.anchor(path)
    template = recipe.model.chat_template
    # A shipped template's name (model.chat_template: chatml) stays a name; a path may lie beside the recipe.
    if template and not is_template_name(template) and recipe.resolve_path(template) != template:
        recipe = recipe.model_copy(
            update={"model": recipe.model.model_copy(update={"chat_template": recipe.resolve_path(template)})}
        )
    return recipe


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe by name or path, apply dotted overrides and validate it against the schema.

    The check against trl and peft is a separate, explicit call (pipeline.train.crosscheck), made by
    `validate` and `finetune`."""
    path = find_recipe(name_or_path)
    raw = load_yaml_file(path)
    raw = raw if raw is not None else {}
    if overrides and isinstance(raw, dict):
        raw = _merge(raw, parse_overrides(overrides))
    return validate_recipe_dict(raw, str(path), name=path.stem, path=path)
