"""What every page shares: rendering a template with the navigation's context, and reading a JSON body."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from pipeline.errors import PipelineError

NAV = (
    ("recipes", "/recipes", "Recipes"),
    ("data", "/data", "Data"),
    ("train", "/train", "Train"),
    ("runs", "/runs", "Runs"),
    ("chat", "/chat", "Chat"),
)


def render(request: Request, template: str, page: str, **context: Any) -> HTMLResponse:
    """The template rendered with the navigation (page: the active entry) and the given context."""
    templates = request.app.state.templates
    return templates.TemplateResponse(request, template, {"page": page, "nav": NAV, **context})


async def body(request: Request) -> dict[str, Any]:
    """The request's JSON object; a PipelineError (one line) for anything else."""
    try:
        data = await request.json()
    except ValueError:
        raise PipelineError("studio: the request body is not JSON.") from None
    if not isinstance(data, dict):
        raise PipelineError("studio: the request body must be a JSON object.")
    return data


def overrides_of(data: dict[str, Any]) -> list[str]:
    """The `overrides` list of a request (dotted key=value strings, as on the command line)."""
    overrides = data.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise PipelineError("studio: overrides must be a list of key=value strings.")
    return overrides
