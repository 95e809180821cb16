"""Chat page: two models side by side (base and adapted by default) on the same prompt, answers streamed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from pipeline.errors import PipelineError
from pipeline.runs.record import RunRecord
from pipeline.studio.pages import render

router = APIRouter()
MAX_NEW_TOKENS = 1024


def targets(request: Request) -> list[dict[str, str]]:
    """What can be chatted with: each finished run (its adapter on its base) and each run's base model."""
    options, bases = [], {}
    for summary in request.app.state.index.summaries():
        if summary.state != "finished":
            continue
        options.append({"id": f"run:{summary.folder}", "label": f"{summary.folder} (adapted)"})
        if summary.base:
            bases.setdefault(summary.base, {"id": f"base:{summary.base}", "label": f"{summary.base} (base)"})
    return list(bases.values()) + options


def resolve(request: Request, target: str) -> tuple[str, str | None]:
    """The model path `pipeline chat` would take for a target id, and the system prompt its recipe sets."""
    kind, _, name = target.partition(":")
    if kind == "run":
        record = RunRecord.load(request.app.state.index.folder(name))
        return str(record.folder), record.system_prompt()
    if kind == "base" and any(option["id"] == target for option in targets(request)):
        return name, None
    raise PipelineError(f"chat target '{target}': pick a run or a base model from the list.")


@router.get("/chat", response_class=HTMLResponse)
def chat_page(request: Request, left: str = "", right: str = "") -> HTMLResponse:
    """The two-model chat; by default the newest finished run's base on the left and the run on the right."""
    options = targets(request)
    runs = [o for o in options if o["id"].startswith("run:")]
    system = None
    if runs and not right:
        right = runs[0]["id"]
        record = RunRecord.load(request.app.state.index.folder(right.removeprefix("run:")))
        left = left or f"base:{(record.recipe or {}).get('model', {}).get('name', '')}"
    if right.startswith("run:"):
        system = resolve(request, right)[1]
    return render(request, "chat.html", "chat", options=options, left=left, right=right, system=system or "")


@router.get("/api/chat/stream")
async def stream(
    request: Request,
    target: str,
    prompt: str,
    system: str = "",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> StreamingResponse:
    """Server-sent events: the target's answer piece by piece ({"piece"}), then {"done"} or {"error"}."""
    path, _ = resolve(request, target)
    messages = ([{"role": "system", "content": system}] if system.strip() else []) + [
        {"role": "user", "content": prompt}
    ]
    sampling: dict[str, Any] = {
        "max_new_tokens": max(1, min(max_new_tokens, MAX_NEW_TOKENS)),
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
    }
    pieces = request.app.state.chat.stream(path, messages, sampling)
    return StreamingResponse(_events(pieces), media_type="text/event-stream")


async def _events(pieces: Iterator[dict[str, Any]]) -> AsyncIterator[str]:
    # The worker's pipe is read in a thread so the server keeps answering other pages meanwhile.
    done = object()
    while True:
        message = await asyncio.to_thread(next, pieces, done)
        if message is done:
            return
        yield f"data: {json.dumps(message)}\n\n"
