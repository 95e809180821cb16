"""Synthetic run folders for the studio's tests and benchmark: the shipped first-format run folder copied, with
a recipe change and an events.jsonl of a few steps, so the ledger and compare read real file formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from pipeline.runs.events import EventLog, Finished, Prepared, Started, Step

TEMPLATE = Path(__file__).resolve().parent / "data" / "runs" / "lora-small-20261207-223402"


def write_run(
    root: Path,
    name: str,
    losses: list[float],
    recipe_changes: dict[str, dict[str, Any]] | None = None,
    end: bool = True,
) -> Path:
    """root/name: the template run folder (no weights) with its recipe changed and one step event per loss."""
    folder = root / name
    shutil.copytree(TEMPLATE, folder, ignore=shutil.ignore_patterns("adapter"))
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text(encoding="utf-8"))
    for section, values in (recipe_changes or {}).items():
        recipe.setdefault(section, {}).update(values)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    log = EventLog()
    log.write_to(folder)
    log.emit(
        Prepared(recipe="lora-small", stage="sft", run_dir=str(folder), train_examples=8, eval_examples=2)
    )
    log.emit(Started(step=0, total_steps=len(losses)))
    for step, loss in enumerate(losses, 1):
        log.emit(
            Step(step=step, total_steps=len(losses), loss=loss, learning_rate=1e-3, tokens_per_second=100.0)
        )
    if end:
        log.emit(Finished(seconds=1.0, metrics={"train_loss": losses[-1]}))
    else:  # still training: no metrics yet, no finish time
        (folder / "metrics.json").unlink()
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest["times"].pop("finished", None)
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder
