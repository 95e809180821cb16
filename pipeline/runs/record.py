"""RunRecord: one run folder as typed records, the way every command and the studio read a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.config.schema import ModelSpec
from pipeline.errors import PipelineError, RecipeError
from pipeline.runs.events import EVENTS, EventBase, read_events
from pipeline.runs.manifest import MANIFEST, Manifest
from pipeline.runs.metrics import METRICS, Metrics

RECIPE = "recipe.yaml"
# libyaml's safe loader where PyYAML was built with it (its wheels are): ~10x faster on a studio ledger of
# hundreds of runs; the pure-Python safe loader otherwise. Both are safe loaders.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
State = Literal["running", "finished", "stopped", "failed", "unknown"]
_TIME_SUFFIX = re.compile(r"-\d{8}-\d{6}(-\d+)?$")


@dataclass
class RunRecord:
    """What a run folder holds: the resolved recipe, the manifest, the metrics and the events so far.

    Any part may be missing (a run still training has no metrics; runs from before the event log have no
    events); nothing here is ever rewritten."""

    folder: Path
    recipe: dict[str, Any] | None
    manifest: Manifest | None
    metrics: Metrics | None
    events: list[EventBase] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path | str) -> RunRecord:
        """Read a run folder; a RecipeError in one line when it is not one or a file in it is unreadable."""
        folder = Path(folder)
        has = {name: (folder / name).is_file() for name in (RECIPE, MANIFEST, METRICS, EVENTS)}
        if not any(has.values()):
            raise RecipeError(
                f"{folder}: not a run folder (no {RECIPE}, {MANIFEST} or {METRICS}); give runs/<recipe>-<time>/."
            )
        recipe = None
        if has[RECIPE]:
            try:
                recipe = yaml.load((folder / RECIPE).read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise RecipeError(f"{folder / RECIPE}: not readable ({type(exc).__name__}).") from None
            if not isinstance(recipe, dict):
                raise RecipeError(f"{folder / RECIPE}: not a recipe (a mapping of sections).")
        return cls(
            folder=folder,
            recipe=recipe,
            manifest=Manifest.read(folder) if has[MANIFEST] else None,
            metrics=Metrics.read(folder) if has[METRICS] else None,
            events=read_events(folder),
        )

    @property
    def name(self) -> str:
        """The recipe the run trained: the manifest's or metrics' record of it, else the folder name less its
        UTC time."""
        if self.manifest is not None:
            return self.manifest.recipe_name
        if self.metrics is not None and self.metrics.recipe:
            return self.metrics.recipe
        return _TIME_SUFFIX.sub("", self.folder.name)

    @property
    def state(self) -> State:
        """finished, stopped or failed from the last event that ends a run (or the manifest's finish time for
        runs without events); running while events arrive without such an end."""
        for event in reversed(self.events):
            kind = getattr(event, "kind", "")
            if kind in ("finished", "stopped", "failed"):
                return kind  # type: ignore[return-value]
        if self.manifest is not None and self.manifest.times.finished:
            return "finished"
        return "running" if self.events else "unknown"

    def model_spec(self) -> ModelSpec | None:
        """The base model the run trained (its recipe's model section), or None without a recipe."""
        if self.recipe is None:
            return None
        try:
            return ModelSpec.model_validate(self.recipe.get("model") or {})
        except ValueError as exc:
            raise RecipeError(f"{self.folder / RECIPE}: model section: {exc}".splitlines()[0]) from None

    def system_prompt(self) -> str | None:
        """The recipe's data.system_prompt, which training put in front of conversations without one."""
        data = (self.recipe or {}).get("data") or {}
        return data.get("system_prompt") or None


def load_run(folder: Path | str) -> RunRecord | None:
    """RunRecord.load, or None when the folder is not a run folder (an adapter or model folder)."""
    try:
        return RunRecord.load(folder)
    except PipelineError:
        return None
