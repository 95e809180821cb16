"""Standard benchmarks through lm-evaluation-harness (eval.benchmarks), offline.

A name is one of the tasks shipped in pipeline/evaluation/benchmark_tasks/ (lm-eval task files over local
JSONL, built by scripts/build_benchmark_data.py) or any task of lm-eval's own registry whose data is in the
local Hugging Face cache. `check_benchmarks` loads every task's data before a model is loaded, so a task
whose data is missing stops the command in one line; `run_benchmarks` scores the model this process holds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.config.schema import EvalSpec
from pipeline.errors import RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TASKS_DIR = Path(__file__).resolve().parent / "benchmark_tasks"
SHIPPED = tuple(sorted(p.stem for p in TASKS_DIR.glob("*.yaml")))
HEADLINE = ("acc", "exact_match", "acc_norm", "f1", "bleu")  # the score a task is summed up by, first found


def shipped_config(name: str) -> dict[str, Any]:
    """A shipped task's lm-eval config with its data files resolved beside the task file."""
    config = yaml.safe_load((TASKS_DIR / f"{name}.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    config["dataset_kwargs"]["data_files"] = {
        split: str(TASKS_DIR / Path(f).name) for split, f in files.items()
    }
    return config


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for the block unless the user set them: a task reads its data from
    local files or the local Hugging Face cache, never the network."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    saved = {key: os.environ.get(key) for key in keys}
    for key in keys:
        os.environ.setdefault(key, "1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def load_tasks(names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """lm-eval's task dict for the names, data loaded; a missing task or missing data -> one-line RecipeError."""
    from lm_eval.tasks import TaskManager

    from pipeline.evaluation.harness import quiet_harness

    others = [n for n in names if n not in SHIPPED]
    with quiet_harness(), offline_hub():
        manager = TaskManager(include_defaults=bool(others))
        if others:
            unknown = [n for n in others if n not in manager.all_tasks]
            if unknown:
                raise RecipeError(
                    f"eval.benchmarks: unknown task {unknown[0]!r}; shipped offline: {', '.join(SHIPPED)}, or a "
                    "task name of lm-eval's registry (`lm_eval ls tasks`)."
                )
        loaded: dict[str, Any] = {"tasks": {}, "groups": {}, "group_map": {}}
        for name in names:
            try:
                part = manager.load([shipped_config(name) if name in SHIPPED else name])
            except Exception as exc:  # datasets' offline/missing-file errors come in many classes
                raise RecipeError(_missing_data(name, exc)) from None
            for key in loaded:
                loaded[key].update(part.get(key, {}))
    return loaded


def _missing_data(name: str, exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if name in SHIPPED:
        return (
            f"eval.benchmarks: task {name!r}: its data file did not load ({first}); rebuild it with "
            "`python scripts/build_benchmark_data.py`."
        )
    return (
        f"eval.benchmarks: task {name!r}: its data is not in the local Hugging Face cache and runs are offline "
        f"({first}); fetch it once with network: `HF_HUB_OFFLINE=0 lm_eval --tasks {name} --model hf "
        "--model_args pretrained=<any small model> --limit 1`, or use a shipped task."
    )


def check_benchmarks(spec: EvalSpec) -> None:
    """Load every task of eval.benchmarks (no model): what would stop the run stops it now, in one line."""
    if spec.enabled and spec.benchmarks:
        load_tasks(spec.benchmarks)


def _headline(scores: dict[str, Any]) -> str | None:
    return next((m for m in HEADLINE if isinstance(scores.get(m), (int, float))), None)


def run_benchmarks(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: EvalSpec
) -> dict[str, Any]:
    """Score the model on eval.benchmarks: {'tasks': {task: {metric: value, 'n', 'main'}}, 'seconds',
    'per_example': {task: [{'doc_id', 'correct'}]}} with `correct` the per-example headline score."""
    import time

    from lm_eval import simple_evaluate

    from pipeline.evaluation.harness import harness_lm, quiet_harness

    started = time.perf_counter()
    loaded = load_tasks(spec.benchmarks)
    was_training = model.training  # lm-eval's wrapper puts the model in eval mode
    try:
        with quiet_harness(), offline_hub():
            out = simple_evaluate(
                model=harness_lm(model, tokenizer, spec.batch_size),
                tasks=list(loaded["tasks"].values()),
                num_fewshot=spec.benchmark_fewshot,
                limit=spec.benchmark_limit,
                bootstrap_iters=0,
                log_samples=True,
                # the run's global random state (training comes after the base's evaluation) stays as it was
                random_seed=None,
                numpy_random_seed=None,
                torch_random_seed=None,
            )
    finally:
        model.train(was_training)
    tasks: dict[str, Any] = {}
    per_example: dict[str, list[dict[str, Any]]] = {}
    for name, raw in (out or {}).get("results", {}).items():
        scores = {
            key.split(",")[0]: float(value)
            for key, value in raw.items()
            if isinstance(value, (int, float)) and "stderr" not in key and key != "sample_len"
        }
        main = _headline(scores)
        samples = out["samples"].get(name, [])
        tasks[name] = {**scores, "n": len(samples), "main": main}
        per_example[name] = [
            {"doc_id": s["doc_id"], "correct": float(s.get(main, 0.0)), "text": _doc_text(s.get("doc"))}
            for s in samples
        ]
    return {"tasks": tasks, "seconds": time.perf_counter() - started, "per_example": per_example}


def _doc_text(doc: Any) -> str:
    """A question's text for the report: its `question` field, else the document as text (200 characters)."""
    text = doc.get("question", doc) if isinstance(doc, dict) else doc
    return str(text)[:200]


def compare_benchmarks(
    base: dict[str, Any], adapted: dict[str, Any]
) -> tuple[dict[str, float], dict[str, Any]]:
    """(deltas {'<task>.<metric>': adapted - base}, {task: {'lost', 'gained', 'lost_examples'}}): the
    questions the base got right and the adapted model got wrong, per task (the first 10 listed)."""
    deltas: dict[str, float] = {}
    flips: dict[str, Any] = {}
    for task, scores in adapted.get("tasks", {}).items():
        before = base.get("tasks", {}).get(task)
        if before is None:
            continue
        for metric, value in scores.items():
            if metric not in ("n", "main") and isinstance(before.get(metric), (int, float)):
                deltas[f"{task}.{metric}"] = value - before[metric]
        was = {row["doc_id"]: row["correct"] for row in base.get("per_example", {}).get(task, [])}
        rows = {row["doc_id"]: row for row in adapted.get("per_example", {}).get(task, [])}
        lost = sorted(d for d, row in rows.items() if was.get(d) and not row["correct"])
        gained = sorted(d for d, row in rows.items() if row["correct"] and d in was and not was[d])
        flips[task] = {
            "lost": len(lost),
            "gained": len(gained),
            "lost_examples": [{"doc_id": d, "text": rows[d].get("text", "")} for d in lost[:10]],
        }
    return deltas, flips
