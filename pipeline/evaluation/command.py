"""`pipeline eval TARGET`: evaluate a run folder, an adapter (folder or Hub id), or a merged/base model
against its base on a recipe's eval split or a data file, with the same code `pipeline finetune` runs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline.config.loader import (
    RECIPES_DIR,
    apply_overrides,
    find_recipe,
    load_recipe,
    validate_recipe_dict,
)
from pipeline.config.schema import DataSpec, Recipe
from pipeline.errors import RecipeError
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.runs.record import RECIPE, load_run

console = Console(stderr=True)


@dataclass
class EvalOutcome:
    """Where the results went, and the metrics as written to metrics.json."""

    out_dir: Path
    metrics: dict[str, Any]


def _from_dict(raw: dict[str, Any], overrides: list[str], source: str, name: str, anchor: Path) -> Recipe:
    return validate_recipe_dict(apply_overrides(raw, overrides), source, name=name, path=anchor)


def eval_recipe(ref: TargetRef, recipe: str | None, data: str | None, overrides: list[str]) -> Recipe:
    """The recipe whose eval settings and eval split are used: --recipe, else the run's own, else defaults.

    A run's recipe.yaml holds data paths as written in the original recipe, so they resolve against the
    original recipe file when it still exists under recipes/. --data becomes the override data.eval=DATA.
    """
    if data:
        where = str(Path(data).resolve()) if Path(data).exists() else data
        overrides = [*overrides, f"data.eval=[{{path: {json.dumps(where)}}}]"]  # JSON quoting is valid YAML
    if recipe:
        loaded = load_recipe(recipe, overrides)
    elif (run := load_run(ref.run_dir) if ref.run_dir is not None else None) and run.recipe is not None:
        name = run.name
        try:
            anchor = find_recipe(name)
        except RecipeError:
            anchor = RECIPES_DIR / f"{name}.yaml"
        loaded = _from_dict(run.recipe, overrides, str(run.folder / RECIPE), name, anchor)
    elif data:
        raw = {"model": ref.base.model_dump(mode="json"), "data": {"train": data}}
        loaded = _from_dict(raw, overrides, "pipeline eval", Path(data).stem, Path(data).resolve())
    else:
        raise RecipeError(
            f"{ref.adapter_dir or ref.base.name}: nothing to evaluate on; pass --recipe NAME or --data FILE."
        )
    return loaded


def load_eval_records(data: DataSpec) -> list[dict[str, Any]]:
    """The eval records of a recipe: data.eval, or the seeded split off data.train that finetune used."""
    from pipeline.data.splits import load_sources, load_splits

    if data.eval:
        skipped: dict[str, int] = {}
        return load_sources(data, data.eval, skipped)
    return load_splits(data).eval


def default_output(ref: TargetRef, output_dir: str, target: str) -> Path:
    """<run>/eval-<UTC time>/ for a run folder, else <train.output_dir>/eval-<target name>-<UTC time>/."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if ref.run_dir is not None:
        return ref.run_dir / f"eval-{stamp}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(target.rstrip("/")).name or "model")
    return Path(output_dir) / f"eval-{name}-{stamp}"


def run_eval(
    target: str,
    recipe: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    output: str | None = None,
    base: str | None = None,
    compare: bool = True,
    fail_if_worse: bool | None = None,
) -> EvalOutcome:
    """Evaluate TARGET (and its base, unless compare is off), write the report, then apply the gate."""
    from pipeline.config.schema import ModelSpec
    from pipeline.evaluation.benchmarks import check_benchmarks
    from pipeline.evaluation.gate import enforce_gate
    from pipeline.evaluation.report import print_summary
    from pipeline.evaluation.runner import evaluate_model, prepare_eval, write_results
    from pipeline.models.artifacts import load_target
    from pipeline.models.loading import load_base_model

    ref = resolve_target(target)
    gate = [] if fail_if_worse is None else [f"eval.fail_if_worse={str(fail_if_worse).lower()}"]
    spec = eval_recipe(ref, recipe, data, [*(overrides or []), *gate])
    check_benchmarks(spec.eval)  # a task whose data is missing stops here, before any weight loads
    records = load_eval_records(spec.data)
    loaded = load_target(target)
    data_set = prepare_eval(records, loaded.tokenizer, spec.eval, spec.train.max_length, spec.train.loss_on)
    prompt = spec.data.system_prompt
    # Compare with --base, else the adapter's base (adapter switched off), else a full run's base model.
    base_spec = (
        ModelSpec(name=base)
        if base
        else spec.model
        if ref.kind == "run" and ref.adapter_dir is None
        else None
    )
    metrics: dict[str, Any] = {
        "recipe": spec.name,
        "model": ref.base.name,
        "target": target,
        "target_kind": ref.kind,
    }
    if compare and spec.eval.base and (base_spec is not None or ref.adapter_dir is not None):
        console.print("Evaluating the base model ...")
        if base_spec is None:
            with loaded.model.disable_adapter():
                metrics["base"] = evaluate_model(loaded.model, loaded.tokenizer, spec.eval, data_set, prompt)
        else:
            base_model = load_base_model(base_spec)
            metrics["base"] = evaluate_model(base_model, loaded.tokenizer, spec.eval, data_set, prompt)
            del base_model
        metrics["model"] = base_spec.name if base_spec else ref.base.name
    console.print(f"Evaluating {target} ...")
    metrics["adapted"] = evaluate_model(loaded.model, loaded.tokenizer, spec.eval, data_set, prompt)
    out_dir = Path(output) if output else default_output(ref, spec.train.output_dir, target)
    write_results(out_dir, spec, metrics, data_set)
    print_summary(metrics, out_dir, console)
    enforce_gate(metrics, out_dir / "report.html")
    return EvalOutcome(out_dir=out_dir, metrics=metrics)
