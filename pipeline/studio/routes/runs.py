"""Runs: the ledger, a run's live page (events streamed as they are appended), preference/RL curves, compare."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from pipeline.runs.events import EVENTS, parse_event
from pipeline.runs.record import RunRecord
from pipeline.runs.rollouts import read_rollouts
from pipeline.studio.compare import comparison
from pipeline.studio.pages import render
from pipeline.studio.runs_index import summarize

router = APIRouter()
POLL_SECONDS = 0.3
ENDS = ("finished", "stopped", "failed")


@router.get("/runs", response_class=HTMLResponse)
def ledger(request: Request) -> HTMLResponse:
    """Every run folder, sortable and filterable; pick two or more to compare."""
    rows = [s.as_dict() for s in request.app.state.index.summaries()]
    return render(request, "runs.html", "runs", rows=rows, runs_dir=str(request.app.state.runs_dir))


@router.get("/api/runs")
def runs(request: Request) -> list[dict[str, Any]]:
    """The ledger as JSON."""
    return [s.as_dict() for s in request.app.state.index.summaries()]


@router.get("/runs/{name}", response_class=HTMLResponse)
def run_page(request: Request, name: str) -> HTMLResponse:
    """A run, live: step, loss, learning rate, grad norm, eval loss, tokens/s, time left, the log's tail."""
    record = RunRecord.load(request.app.state.index.folder(name))
    job = request.app.state.jobs.running_for(name)
    return render(
        request, "run.html", "runs", run=summarize(record).as_dict(), job=job.as_dict() if job else None
    )


@router.get("/runs/{name}/preference", response_class=HTMLResponse)
def preference_page(request: Request, name: str) -> HTMLResponse:
    """DPO/KTO reward margins and accuracy, GRPO/RLOO rewards and the share of flat-reward groups, by step."""
    record = RunRecord.load(request.app.state.index.folder(name))
    return render(request, "preference.html", "runs", run=summarize(record).as_dict())


@router.get("/runs/{name}/rollouts", response_class=HTMLResponse)
def rollouts_page(request: Request, name: str) -> HTMLResponse:
    """GRPO/RLOO: the last rounds' prompt groups, each completion's rewards, and the share of flat groups."""
    folder = request.app.state.index.folder(name)
    rounds = []
    for item in read_rollouts(folder):
        groups = item["groups"]
        names = list(dict.fromkeys(k for g in groups for c in g["completions"] for k in c["rewards"]))
        flat = sum(bool(g.get("flat")) for g in groups) / len(groups) if groups else 0.0
        rounds.append({"step": item.get("step"), "groups": groups, "names": names, "flat_share": flat})
    run = summarize(RunRecord.load(folder)).as_dict()
    return render(request, "rollouts.html", "runs", run=run, rounds=rounds)


@router.get("/api/runs/{name}/events")
async def events(request: Request, name: str, since: int = 0) -> StreamingResponse:
    """Server-sent events: each line of the run's events.jsonl from byte `since`, then new ones as the run
    appends them, until the run has ended (its last event ends it and no studio job resumes it: a last `end`
    event)."""
    path = request.app.state.index.folder(name) / EVENTS
    return StreamingResponse(_follow(request, name, path, since), media_type="text/event-stream")


async def _follow(request: Request, name: str, path: Any, offset: int) -> AsyncIterator[str]:
    pending = b""
    ended = False
    jobs = request.app.state.jobs
    while not await request.is_disconnected():
        chunk = b""
        if path.is_file():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        offset += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            event = parse_event(line.decode("utf-8", "replace"))
            if event is not None:
                ended = getattr(event, "kind", "") in ENDS
                yield f"data: {event.model_dump_json()}\n\n"
        if ended and jobs.active_for(name) is None:
            yield f"event: end\ndata: {json.dumps({'offset': offset})}\n\n"
            return
        await asyncio.sleep(POLL_SECONDS)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request, run: list[str] = Query(default=[])) -> HTMLResponse:
    """Runs side by side: curves overlaid, metrics with deltas and the gate, recipe keys that differ, answers."""
    records = [RunRecord.load(request.app.state.index.folder(name)) for name in run]
    return render(request, "compare.html", "runs", names=run, data=comparison(records))
