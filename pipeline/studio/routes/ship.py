"""Ship page: merge, export (GGUF type, Ollama) and push a run as child processes, their output shown.

The Hub token is read by `pipeline push` from the environment the studio was started in: the studio never asks
for it, shows it or stores it; the page only says whether HF_TOKEN is set.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pipeline.errors import PipelineError
from pipeline.export.command import DTYPES, FORMATS
from pipeline.runs.record import RunRecord
from pipeline.studio.jobs import pipeline_argv
from pipeline.studio.pages import body, render
from pipeline.studio.runs_index import summarize

router = APIRouter()
EXPORT_FORMATS = FORMATS
EXPORT_DTYPES = DTYPES
MERGE_DTYPES = ("auto", "float32", "bfloat16", "float16")
# Bytes per weight of each GGUF type as llama.cpp lays it out (q8_0: 32 int8 + one f16 scale per block of 32;
# the k-quants' nominal mixes). Tensors whose width is no multiple of 256 fall back to larger types, so small
# models come out bigger than this says (SmolLM2-135M: docs/serving.md's measured sizes).
BYTES_PER_WEIGHT = {
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "f32": 4.0,
    "q6_k": 6.5625 / 8,
    "q5_k_m": 5.69 / 8,
    "q4_k_m": 4.85 / 8,
    "q4_0": 18 / 32,
}
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@router.get("/runs/{name}/ship", response_class=HTMLResponse)
def ship_page(request: Request, name: str) -> HTMLResponse:
    """Merge, export and push forms for a run."""
    record = RunRecord.load(request.app.state.index.folder(name))
    weights = base_weights(record)
    sizes = {d: weights * BYTES_PER_WEIGHT[d] / 2**20 for d in EXPORT_DTYPES} if weights else {}
    return render(
        request,
        "ship.html",
        "runs",
        run=summarize(record).as_dict(),
        formats=EXPORT_FORMATS,
        dtypes=EXPORT_DTYPES,
        merge_dtypes=MERGE_DTYPES,
        bytes_per_weight=BYTES_PER_WEIGHT,
        sizes=sizes,
        weights=weights,
        token_set=bool(os.environ.get("HF_TOKEN")),
    )


def base_weights(record: RunRecord) -> int | None:
    """The number of weights of the run's base model, read from its safetensors headers (no tensor loads);
    None when the manifest names no local folder."""
    folder = record.manifest.model.folder if record.manifest and record.manifest.model else None
    files = sorted(Path(folder).glob("*.safetensors")) if folder and Path(folder).is_dir() else []
    total = 0
    for path in files:
        try:
            with path.open("rb") as handle:
                size = struct.unpack("<Q", handle.read(8))[0]
                header = json.loads(handle.read(size))
        except (OSError, ValueError, struct.error):
            return None
        total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    return total or None


def ship_argv(folder: str, data: dict[str, Any]) -> tuple[str, list[str]]:
    """The `pipeline merge|export|push` command line for a ship request, its values checked first."""
    action = data.get("action")
    if action == "merge":
        dtype = str(data.get("dtype") or "auto")
        if dtype not in MERGE_DTYPES:
            raise PipelineError(f"merge dtype '{dtype}': use one of {', '.join(MERGE_DTYPES)}.")
        return "merge", pipeline_argv("merge", folder, "--dtype", dtype)
    if action == "export":
        fmt, dtype = str(data.get("format") or "gguf"), str(data.get("dtype") or "f16")
        if fmt not in EXPORT_FORMATS or dtype not in EXPORT_DTYPES:
            raise PipelineError(
                f"export {fmt}/{dtype}: use a format of {', '.join(EXPORT_FORMATS)} and a type of "
                f"{', '.join(EXPORT_DTYPES)}."
            )
        return "export", pipeline_argv("export", folder, "--format", fmt, "--dtype", dtype)
    if action == "push":
        repo = str(data.get("repo_id") or "")
        if not REPO_ID.match(repo):
            raise PipelineError(f"repository '{repo}': give ORG/NAME, e.g. my-org/lora-small.")
        visibility = "--private" if data.get("private", True) else "--public"
        merged = ["--merged"] if data.get("merged") else []
        return "push", pipeline_argv("push", folder, "--repo-id", repo, visibility, *merged)
    raise PipelineError(f"ship action '{action}': use merge, export or push.")


@router.post("/api/runs/{name}/ship")
async def ship(request: Request, name: str) -> dict[str, Any]:
    """Start merge, export or push of the run as a task; its output is the job's tail."""
    folder = request.app.state.index.folder(name)
    action, argv = ship_argv(str(folder), await body(request))
    return request.app.state.jobs.submit("task", f"{action} {name}", argv).as_dict()
