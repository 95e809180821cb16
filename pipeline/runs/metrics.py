"""metrics.json as a typed record: training figures, base and adapted evaluation, their comparison and gate.

`pipeline.evaluation.runner.write_results` validates what it writes through `Metrics`, so a renamed or
mistyped key fails when the file is written, not when a reader opens it. Sections keep the keys of newer
writers (extra="allow"); metrics.json files from before the typed record (schema_version 1) read unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from pipeline.errors import RecipeError
from pipeline.runs.manifest import Section, first_problem, read_json

METRICS = "metrics.json"
SCHEMA_VERSION = 2  # 1: files written before the typed record (2026-12); the same keys, untyped


class Similarity(Section):
    mean: float | None = None
    median: float | None = None
    mean_ci95: list[float] | None = None  # 95% t-interval of the mean (absent in files before 2026-12)


class ModelScores(Section):
    """One model's scores on the eval split (pipeline.evaluation.runner.evaluate_model)."""

    perplexity: float | None = None
    perplexity_all_tokens: float | None = None
    nll: float | None = None
    tokens: int | None = None
    examples: int | None = None
    similarity: Similarity | None = None
    lexical: dict[str, float | None] | None = None
    generation: dict[str, Any] | None = None
    preference: dict[str, Any] | None = None
    labelled: dict[str, Any] | None = None
    reward: dict[str, Any] | None = None
    distillation: dict[str, Any] | None = None  # kl: mean KL(teacher || student) per trained token, nats
    safety: dict[str, Any] | None = None
    general_text: dict[str, Any] | None = None  # perplexity outside the training domain (2026-12)
    benchmarks: dict[str, Any] | None = None  # lm-eval tasks: {'tasks': {task: {metric: value}}} (2026-12)
    seconds: dict[str, float] = Field(default_factory=dict)


class TrainFigures(Section):
    """What training reported (pipeline.train.loop.train_model)."""

    steps: int
    loss: float | None = None
    seconds: float
    examples: int | None = None  # None: streamed
    world_size: int = 1
    log_history: list[dict[str, Any]] = Field(default_factory=list)
    tokens_per_second: float | None = None
    roofline_share: float | None = None
    hardware: str | None = None


class Comparison(Section):
    deltas: dict[str, float | None] = Field(default_factory=dict)
    perplexity_relative: float | None = None
    perplexity_improved_rate: float | None = None
    adapted_closer_rate: float | None = None
    adapted_closer_rate_ci95: list[float] | None = None  # 95% Wilson interval
    forgetting: dict[str, Any] | None = None  # what got most worse outside the training domain (2026-12)
    judge: dict[str, Any] | None = None  # eval.judge: win rate of adapted over base answers (2026-12)


class Metrics(Section):
    schema_version: int = SCHEMA_VERSION
    recipe: str | None = None
    model: str | None = None
    target: str | None = None  # `pipeline eval`: what was evaluated
    target_kind: str | None = None
    train: TrainFigures | None = None
    base: ModelScores | None = None
    adapted: ModelScores | None = None
    comparison: Comparison | None = None
    gate: dict[str, Any] | None = None
    checks: dict[str, Any] | None = None
    parent: dict[str, Any] | None = None
    skipped_records: dict[str, int] = Field(default_factory=dict)
    hygiene: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path) -> Metrics:
        """A metrics.json (or the one inside a run folder), with one-line errors."""
        path = Path(path)
        if path.is_dir():
            path = path / METRICS
        fix = "the run has not finished its evaluation, or give a run folder"
        data = read_json(path, "no metrics yet", "not readable metrics", fix)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError(f"{path}: {first_problem(exc)}; not metrics this version can read.") from None

    def as_dict(self) -> dict[str, Any]:
        """The metrics as the file holds them (the mapping the report and model card render)."""
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def headline(self) -> dict[str, float | None]:
        """The few figures a run is summed up by (the finished event, the run ledger)."""
        figures: dict[str, float | None] = {}
        if self.train is not None:
            figures.update(train_loss=self.train.loss, tokens_per_second=self.train.tokens_per_second)
        for side, scores in (("base", self.base), ("adapted", self.adapted)):
            if scores is not None:
                figures[f"{side}_perplexity"] = scores.perplexity
                figures[f"{side}_similarity"] = scores.similarity.mean if scores.similarity else None
        return {k: (v if v is None or math.isfinite(v) else None) for k, v in figures.items()}


def check_metrics(metrics: dict[str, Any], path: Path) -> None:
    """Raise a one-line ValueError naming the key of metrics that does not fit the typed record (before
    metrics.json is written at path)."""
    try:
        Metrics.model_validate(metrics)
    except ValidationError as exc:
        raise ValueError(f"{path}: {first_problem(exc)} (got {exc.errors()[0].get('input')!r})") from None
