"""Recipes page: the shipped recipes, a recipe as a form or YAML with live validation, the memory plan, save."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pipeline.config.loader import RECIPES_DIR, list_recipe_files
from pipeline.config.strict_yaml import load_yaml_file
from pipeline.errors import PipelineError
from pipeline.studio import recipe_form
from pipeline.studio.jobs import pipeline_argv
from pipeline.studio.pages import body, overrides_of, render

router = APIRouter()
GIB = 2**30


def shipped() -> list[dict[str, str]]:
    """Each recipe under recipes/ with its description (read as YAML, not validated: listing stays fast)."""
    rows = []
    for path in list_recipe_files():
        try:
            raw = load_yaml_file(path) or {}
            description = str(raw.get("description", "")) if isinstance(raw, dict) else ""
        except Exception as exc:  # a broken file is listed with its problem, not hidden
            description = f"unreadable: {str(exc).splitlines()[0]}"
        name = str(path.relative_to(RECIPES_DIR).with_suffix(""))
        rows.append({"name": name, "path": str(path), "description": description})
    return rows


@router.get("/recipes", response_class=HTMLResponse)
def recipes_page(request: Request) -> HTMLResponse:
    """The shipped recipes, each opening in the editor."""
    return render(request, "recipes.html", "recipes", recipes=shipped(), folder=str(RECIPES_DIR))


@router.get("/recipes/edit", response_class=HTMLResponse)
def edit_page(request: Request, recipe: str = "lora-small") -> HTMLResponse:
    """One recipe as a form generated from the schema, and as YAML."""
    path, raw = recipe_form.recipe_source(recipe)
    return render(
        request,
        "recipe.html",
        "recipes",
        recipe=recipe,
        path=str(path),
        text=path.read_text(encoding="utf-8"),
        sections=recipe_form.form_sections(raw),
    )


def _request(data: dict[str, Any]) -> tuple[str, list[str], str | None]:
    text = data.get("yaml")
    return (
        str(data.get("recipe") or "lora-small"),
        overrides_of(data),
        text if isinstance(text, str) else None,
    )


@router.post("/api/recipes/validate")
async def validate(request: Request) -> dict[str, Any]:
    """{ok, errors}: the loader's own one-line errors for the recipe with the form's overrides (or YAML)."""
    recipe, errors = recipe_form.check(*_request(await body(request)))
    return {"ok": recipe is not None, "errors": errors}


@lru_cache(maxsize=32)
def _plan(recipe: str, overrides: tuple[str, ...], text: str | None) -> dict[str, Any]:
    from pipeline.planning.memory import estimate, model_shape

    loaded, errors = recipe_form.check(recipe, list(overrides), text)
    if loaded is None:
        return {"ok": False, "errors": errors}
    shape = model_shape(loaded)
    plans = {}
    for device in ("cpu", "cuda"):
        figures = estimate(loaded, shape, device=device)
        plans[device] = {
            "rows": [{"component": n, "gib": round(s / GIB, 3), "how": h} for n, s, h in figures.rows],
            "total_gib": round(figures.total / GIB, 3),
        }
    return {"ok": True, "params": shape.params, "trainable": shape.trainable, "plans": plans}


@router.post("/api/recipes/plan")
async def plan(request: Request) -> dict[str, Any]:
    """The memory plan (pipeline.planning.memory, from config.json only) on CPU and on one GPU."""
    recipe, overrides, text = _request(await body(request))
    try:
        return _plan(recipe, tuple(overrides), text)
    except PipelineError as exc:
        return {"ok": False, "errors": [str(exc).splitlines()[0]]}


@router.post("/api/recipes/estimate")
async def estimate_tokens(request: Request) -> dict[str, Any]:
    """`pipeline tokens RECIPE [overrides]` as a task: tokens per example, the share cut at max_length, and
    the training time measured on a few steps of this machine; its output is the job's tail."""
    recipe, overrides, text = _request(await body(request))
    if text is not None:
        raise PipelineError("estimate: save the YAML as a recipe first, then estimate it from the form.")
    loaded, errors = recipe_form.check(recipe, overrides, None)
    if loaded is None:
        raise PipelineError(errors[0] if errors else f"{recipe}: not a valid recipe.")
    argv = pipeline_argv("tokens", str(loaded.path or recipe), *overrides)
    return request.app.state.jobs.submit("task", f"tokens {loaded.name}", argv).as_dict()


@router.post("/api/recipes/save")
async def save(request: Request) -> dict[str, Any]:
    """Save the edited recipe as a new file beside the original (validated first, atomic, never over one)."""
    data = await body(request)
    target = recipe_form.save(*_request(data), str(data.get("name") or ""))
    return {"ok": True, "path": str(target)}
