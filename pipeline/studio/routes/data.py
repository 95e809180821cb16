"""Data page: the audit (records as the model sees them, trained tokens highlighted), the hygiene report and,
for preference data, chosen and rejected answers side by side. Audit and hygiene run as `pipeline data ...`
child processes (they load the tokenizer and read every record); their pages and reports are served here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from pipeline.config.loader import find_recipe
from pipeline.errors import PipelineError
from pipeline.studio import recipe_form
from pipeline.studio.jobs import pipeline_argv
from pipeline.studio.pages import body, render

router = APIRouter()
PAIRS_SHOWN = 5
PAIR_STAGES = ("dpo", "orpo", "simpo")


def outputs(request: Request, recipe: str) -> dict[str, Path]:
    """Where the studio keeps a recipe's audit page and hygiene report."""
    folder = request.app.state.runs_dir / ".studio" / "data"
    stem = find_recipe(recipe).stem
    return {"audit": folder / f"{stem}-audit.html", "hygiene": folder / f"{stem}-hygiene.json"}


def pairs(recipe: str) -> list[dict[str, Any]]:
    """The first preference pairs of the recipe's training files: prompt, chosen and rejected answers."""
    loaded, _ = recipe_form.check(recipe, [])
    if loaded is None or loaded.train.stage not in PAIR_STAGES:
        return []
    from pipeline.data.pairs import convert_pair, pair_parts

    shown: list[dict[str, Any]] = []
    for source in loaded.data.train:
        path = Path(loaded.data.resolve_path(source.path))
        if path.suffix != ".jsonl" or not path.is_file():
            continue
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if len(shown) >= PAIRS_SHOWN:
                    return shown
                try:
                    prompt, chosen, rejected = pair_parts(convert_pair(json.loads(line)))
                except (PipelineError, ValueError, KeyError, TypeError):
                    continue
                shown.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return shown


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request, recipe: str = "lora-small") -> HTMLResponse:
    """The recipe's data: audit and hygiene (run on request), preference pairs side by side."""
    files = outputs(request, recipe)
    hygiene = json.loads(files["hygiene"].read_text(encoding="utf-8")) if files["hygiene"].is_file() else None
    return render(
        request,
        "data.html",
        "data",
        recipe=recipe,
        has_audit=files["audit"].is_file(),
        hygiene=hygiene,
        pairs=pairs(recipe),
    )


@router.get("/data/audit", response_class=FileResponse)
def audit_file(request: Request, recipe: str) -> FileResponse:
    """The audit page `pipeline data audit` wrote for the recipe."""
    path = outputs(request, recipe)["audit"]
    if not path.is_file():
        raise PipelineError(f"no audit of {recipe} yet; run it from the Data page.")
    return FileResponse(path, media_type="text/html")


@router.post("/api/data/{what}")
async def run_check(request: Request, what: str) -> dict[str, Any]:
    """Start `pipeline data audit` or `pipeline data hygiene` for the recipe as a task."""
    recipe = str((await body(request)).get("recipe") or "lora-small")
    files = outputs(request, recipe)
    files["audit"].parent.mkdir(parents=True, exist_ok=True)
    path = str(find_recipe(recipe))
    if what == "audit":
        argv = pipeline_argv("data", "audit", path, "--examples", "5", "--html", str(files["audit"]))
    elif what == "hygiene":
        argv = pipeline_argv("data", "hygiene", path, "--output", str(files["hygiene"]))
    else:
        raise PipelineError(f"data check '{what}': use audit or hygiene.")
    return request.app.state.jobs.submit("task", f"data {what} {Path(path).stem}", argv).as_dict()
