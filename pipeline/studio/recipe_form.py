"""A recipe as a form: one field per schema key (its Field description is the help text), edits as the CLI's
dotted overrides, validation by the loader itself so the studio shows the CLI's own one-line errors."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from pipeline.config.loader import apply_overrides, find_recipe, validate_recipe_dict
from pipeline.config.schema import Recipe
from pipeline.config.stages import STAGE_SECTIONS
from pipeline.config.strict_yaml import load_yaml_file, parse_yaml
from pipeline.errors import PipelineError, RecipeError

Kind = Literal["bool", "choice", "number", "text", "yaml"]


@dataclass
class FormField:
    """One recipe key as a form control."""

    key: str  # dotted: train.learning_rate
    kind: Kind
    help: str
    value: str  # the recipe's value (or the default) as YAML flow text
    choices: tuple[str, ...] = ()
    default: str = ""


def flow(value: Any) -> str:
    """A value as one line of YAML flow text (what a dotted override takes)."""
    if value is None:
        return "null"
    if isinstance(value, BaseModel):  # a nested section's default (e.g. eval.gate): its settings as a mapping
        value = value.model_dump(mode="json")
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def _kind(annotation: Any) -> tuple[Kind, tuple[str, ...]]:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind(args[0])
    if origin is Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    if annotation is bool:
        return "bool", ("true", "false")
    if annotation in (int, float):
        return "number", ()
    if annotation is str:
        return "text", ()
    return "yaml", ()


def _section_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def form_sections(raw: dict[str, Any]) -> list[tuple[str, str, list[FormField]]]:
    """(section, its description, fields) for every section of the schema the recipe uses: the common
    ones and its stage's own section (another stage's section would be an error)."""
    stage = str((raw.get("train") or {}).get("stage", "sft"))
    own = {stage} & set(STAGE_SECTIONS)  # a stage's settings section is named after the stage
    sections = []
    for name, info in Recipe.model_fields.items():
        model = _section_model(info.annotation)
        if model is None:
            continue
        optional = type(None) in typing.get_args(info.annotation)
        if optional and name not in raw and name not in own:
            continue
        values = raw.get(name) or {}
        fields = []
        for key, spec in model.model_fields.items():
            kind, choices = _kind(spec.annotation)
            fallback = spec.get_default(call_default_factory=True)
            default = "" if fallback is PydanticUndefined else flow(fallback)
            value = flow(values[key]) if key in values else default
            fields.append(FormField(f"{name}.{key}", kind, spec.description or "", value, choices, default))
        sections.append((name, info.description or "", fields))
    return sections


def recipe_source(name_or_path: str) -> tuple[Path, dict[str, Any]]:
    """The recipe file and its data as written (strict YAML: duplicate keys are errors with their lines)."""
    path = find_recipe(name_or_path)
    raw = load_yaml_file(path)
    if raw is not None and not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of sections.")
    return path, raw or {}


def edited(name_or_path: str, overrides: list[str], text: str | None = None) -> tuple[Path, dict[str, Any]]:
    """The recipe's data after the form's overrides, or the YAML text typed instead of the file's."""
    path, raw = recipe_source(name_or_path)
    if text is not None:
        try:
            raw = parse_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise RecipeError(
                f"{path}{where}: {getattr(exc, 'problem', None) or exc}".splitlines()[0]
            ) from None
        raw = raw if raw is not None else {}
    return path, apply_overrides(raw, overrides) if isinstance(raw, dict) else raw


def check(
    name_or_path: str, overrides: list[str], text: str | None = None
) -> tuple[Recipe | None, list[str]]:
    """The validated recipe, or None and the loader's one-line errors (every problem at once)."""
    try:
        path, raw = edited(name_or_path, overrides, text)
        return validate_recipe_dict(raw, str(path), name=path.stem, path=path), []
    except PipelineError as exc:
        return None, [line for line in str(exc).splitlines() if line.strip()]


def save(name_or_path: str, overrides: list[str], text: str | None, new_name: str) -> Path:
    """Write the edited recipe beside the original (its relative data paths keep working) as <new_name>.yaml,
    after validating it; never over an existing file."""
    from pipeline.files import safe_child, write_text

    recipe, errors = check(name_or_path, overrides, text)
    if recipe is None:
        raise RecipeError(errors[0])
    path, raw = edited(name_or_path, overrides, text)
    if not new_name or "/" in new_name or new_name.startswith("."):
        raise RecipeError(f"recipe name '{new_name}': use a plain file name such as lora-small-mine.")
    target = safe_child(path.parent, f"{new_name.removesuffix('.yaml')}.yaml", "recipe")
    if target.exists():
        raise RecipeError(
            f"{target}: already exists; choose another name (the studio never overwrites a recipe)."
        )
    write_text(target, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return target
