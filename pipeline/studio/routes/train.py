"""Train page: start a run from a recipe (queued behind the one training), stop it, resume it; the job list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pipeline.config.loader import find_recipe
from pipeline.errors import PipelineError
from pipeline.studio import recipe_form
from pipeline.studio.jobs import pipeline_argv
from pipeline.studio.pages import body, overrides_of, render

router = APIRouter()


@router.get("/train", response_class=HTMLResponse)
def train_page(request: Request) -> HTMLResponse:
    """The training queue: what runs, what waits, each job's output."""
    jobs = [job.as_dict() for job in request.app.state.jobs.listing()]
    return render(request, "train.html", "train", jobs=jobs)


@router.get("/api/jobs")
def jobs(request: Request) -> list[dict[str, Any]]:
    """Every job of this studio session, newest first, with its output's tail."""
    return [job.as_dict() for job in request.app.state.jobs.listing()]


@router.get("/api/jobs/{job_id}")
def job(request: Request, job_id: int) -> dict[str, Any]:
    """One job with its output's tail."""
    return request.app.state.jobs.get(job_id).as_dict()


@router.post("/api/jobs/{job_id}/stop")
def stop_job(request: Request, job_id: int) -> dict[str, Any]:
    """Stop a job (SIGINT: a run checkpoints and exits 130) or drop it from the queue."""
    return request.app.state.jobs.stop(job_id).as_dict()


@router.post("/api/train")
async def start(request: Request) -> dict[str, Any]:
    """Queue `pipeline finetune RECIPE OVERRIDES train.output_dir=<runs>` after the same check the form shows."""
    data = await body(request)
    recipe, overrides = str(data.get("recipe") or ""), overrides_of(data)
    loaded, errors = recipe_form.check(recipe, overrides)
    if loaded is None:
        raise PipelineError(errors[0])
    runs_dir = request.app.state.runs_dir
    argv = pipeline_argv("finetune", str(find_recipe(recipe)), *overrides, f"train.output_dir={runs_dir}")
    return request.app.state.jobs.submit("train", f"finetune {loaded.name}", argv).as_dict()


@router.post("/api/runs/{name}/resume")
def resume(request: Request, name: str) -> dict[str, Any]:
    """Queue `pipeline finetune --resume RUN`: the run continues from its newest checkpoint in its folder."""
    folder = request.app.state.index.folder(name)
    argv = pipeline_argv("finetune", "--resume", str(folder))
    return request.app.state.jobs.submit("train", f"resume {name}", argv, run=name).as_dict()


@router.post("/api/runs/{name}/stop")
def stop_run(request: Request, name: str) -> dict[str, Any]:
    """Stop the studio's job that trains this run (checkpoint, resumable)."""
    running = request.app.state.jobs.running_for(name)
    if running is None:
        raise PipelineError(
            f"run {name} is not trained by this studio; stop a run started in a terminal with Ctrl-C there."
        )
    return request.app.state.jobs.stop(running.id).as_dict()
