"""finetune(recipe): the one place where the steps of a run are put in order.

check -> prepare data -> load model -> open the run folder -> evaluate the base -> train -> save -> check the
saved result -> evaluate the adapted model -> report, card, manifest -> gate -> push. Each step is a function
of its own stage's package; `pipeline tokens`, the benchmarks and the tests call the same pieces.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pipeline.config.schema import Recipe
from pipeline.evaluation.benchmarks import check_benchmarks
from pipeline.evaluation.gate import enforce_gate
from pipeline.evaluation.report import print_summary
from pipeline.evaluation.runner import EvalSet, evaluate_model, prepare_eval, write_results
from pipeline.files import write_text
from pipeline.runs.events import Callback, Evaluation, EventLog, Failed, Finished, Prepared, Stopped
from pipeline.runs.manifest import Manifest
from pipeline.runs.metrics import Metrics
from pipeline.runs.record import RECIPE
from pipeline.train import distributed
from pipeline.train.inputs import Inputs, load_model, prepare_inputs
from pipeline.train.loop import Trained, train_model
from pipeline.train.signals import Interrupted, StopRequest
from pipeline.train.stages.registry import stage

log = logging.getLogger(__name__)
console = Console(stderr=True)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]


def finetune(
    recipe: Recipe,
    resume: str | None = None,
    force: bool = False,
    previous: Manifest | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    stop: StopRequest | None = None,
) -> RunResult:
    """Train the recipe's adapter, evaluate base vs adapted, and write the run folder.

    resume: a run folder or 'latest' to continue from its newest complete checkpoint; force: accept changed
    inputs on resume; previous: the manifest a --from-manifest re-run repeats. Every callback is called with
    each event of the run (pipeline.runs.events), which also go to the run folder's events.jsonl as they
    happen (main process only); a set `stop` ends training after the current step, checkpointed and
    resumable, as Ctrl-C does.
    """
    events = EventLog(callbacks)
    try:
        return _finetune(recipe, resume, force, previous, events, stop)
    except Interrupted as stopped:
        events.emit(Stopped(step=events.last_step, message=str(stopped)))
        raise
    except Exception as error:
        message, code, _ = distributed.one_line(error)
        events.emit(Failed(error=message, exit_code=code))
        raise


def _finetune(
    recipe: Recipe,
    resume: str | None,
    force: bool,
    previous: Manifest | None,
    events: EventLog,
    stop: StopRequest | None,
) -> RunResult:
    from pipeline.train.patches import registry

    clock = time.perf_counter()
    inputs = prepare(recipe)  # every check `validate` makes, before any weight loads
    registry.reset()  # manifest.json lists the speed levers of this run only
    main = distributed.is_main_process()  # under `accelerate launch` rank 0 alone writes and reports
    model = load_model(recipe)
    # The run folder appears only once the inputs proved valid: a bad recipe, data file or model writes nothing.
    run_dir, checkpoint, manifest = _open_run(recipe, inputs, main, resume, force, previous)
    if main:
        events.write_to(run_dir)
        events.emit(
            Prepared(
                recipe=recipe.name,
                stage=recipe.train.stage,
                run_dir=str(run_dir),
                train_examples=len(inputs.splits.train) if inputs.stream is None else None,
                eval_examples=len(inputs.splits.eval),
                resumed_from=str(checkpoint) if checkpoint else None,
            )
        )
    else:
        events = EventLog()  # events are the main process's to report
    seconds = {"load": time.perf_counter() - clock}
    metrics: dict[str, Any] = {"recipe": recipe.name, "model": recipe.model.name}
    metrics.update(skipped_records=inputs.splits.skipped, hygiene=inputs.hygiene)
    if (
        manifest is not None and manifest.parent is not None
    ):  # model.adapter: the card names the run continued
        metrics["parent"] = manifest.parent.model_dump(mode="json")
    evaluate = recipe.eval.enabled and bool(inputs.splits.eval) and main
    eval_set = _eval_set(recipe, inputs) if evaluate else None
    if eval_set is not None and recipe.eval.base and manifest is not None:  # reused when it can be
        from pipeline.evaluation.base_cache import evaluate_base

        weights = manifest.model.sha256
        if weights and manifest.parent is not None:  # the "base" is the parent adapter on the base weights
            weights = f"{weights}+{manifest.parent.sha256}"
        metrics.update(evaluate_base(model, inputs.tokenizer, recipe, eval_set, weights))
        events.emit(Evaluation(phase="base", metrics=_scores(metrics["base"])))
    try:
        trained = train_model(
            recipe,
            run_dir,
            model,
            inputs.tokenizer,
            inputs.training_data,
            checkpoint,
            eval_dataset=inputs.eval,
            events=events,
            stop=stop,
        )
    except RuntimeError as exc:  # a collective whose peer is gone: one line, not an internal error
        raise distributed.peer_lost(exc) or exc from None
    metrics["train"] = trained.metrics
    seconds["train"] = trained.metrics["seconds"]
    if not main or manifest is None:
        trained.trainer.save_model(str(run_dir / "adapter"))  # joins the gathers of sharded weights
        distributed.agree(lambda: None)  # wait while rank 0 checks, evaluates, reports; its failure is ours
        return RunResult(run_dir=run_dir, metrics=metrics)
    kept = manifest

    def finish() -> None:
        _finish(recipe, run_dir, trained, inputs, eval_set, metrics)
        if "adapted" in metrics:
            events.emit(Evaluation(phase="adapted", metrics=_scores(metrics["adapted"])))
        seconds["total"] = time.perf_counter() - clock
        from pipeline.train.manifest import finish_manifest

        finish_manifest(run_dir, kept, seconds, registry.active_patches())
        if eval_set is not None:
            print_summary(metrics, run_dir, console)

    distributed.agree(finish)  # the waiting ranks learn whether it worked: none waits for a dead rank 0
    enforce_gate(metrics, run_dir / "report.html")  # after every file is written; a failed gate never pushes
    from pipeline.hub.push import push_after_training

    push_after_training(run_dir, recipe.hub)  # rank 0 only (the others returned above); failures warn
    headline = Metrics.model_validate(metrics).headline()
    events.emit(Finished(seconds=time.perf_counter() - clock, metrics=headline))
    return RunResult(run_dir=run_dir, metrics=metrics)


def _scores(scores: dict[str, Any]) -> dict[str, float | None]:
    """The headline numbers of one model's evaluation, for its evaluation event."""
    similarity = scores.get("similarity") or {}
    picked = {
        "perplexity": scores.get("perplexity"),
        "similarity": similarity.get("mean"),
        "reward": (scores.get("reward") or {}).get("mean"),
        "preference_accuracy": (scores.get("preference") or {}).get("accuracy"),
        "teacher_kl": (scores.get("distillation") or {}).get("kl"),
    }
    return {k: float(v) for k, v in picked.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def prepare(recipe: Recipe, launch: str | None = None) -> Inputs:
    """Every check finetune makes before a weight loads, then the run's data, tokenized with its loss masks.

    `pipeline validate` runs exactly this, so what finetune would reject, validate rejects first: the trl/peft
    cross-check, trackers, output folder and launch config (pipeline.train.preflight), then every data source
    read and every record validated, the chat template rendering each conversation, and the splits the
    recipe's eval settings need. The tokenized data is cached, so a finetune after validate reuses it."""
    from pipeline.train.preflight import check_settings

    distributed.start(recipe.train.distributed_timeout)
    check_settings(recipe, launch)
    check_benchmarks(recipe.eval)  # eval.benchmarks' data loads (offline) before any weight does
    wait = recipe.train.data_wait_timeout
    distributed.prepare_assets(recipe.model, wait)
    # One rank per machine reads, checks and tokenizes; the others reuse its cache (or stop with its error).
    return distributed.once_per_machine(
        lambda: prepare_inputs(recipe), "the data (reading, hygiene, tokenizing)", wait
    )


def _open_run(
    recipe: Recipe,
    inputs: Inputs,
    main: bool,
    resume: str | None,
    force: bool,
    previous: Manifest | None,
) -> tuple[Path, Path | None, Manifest | None]:
    """Create (or find, when resuming) the run folder all ranks agree on; rank 0 writes recipe.yaml, the
    manifest and the data-audit page into it (the other ranks get no manifest)."""
    from pipeline.data.audit import write_run_page
    from pipeline.train.manifest import build_manifest, write_manifest
    from pipeline.train.resume import open_run

    manifest = build_manifest(recipe, inputs.splits, inputs.tokenizer) if main else None
    run_dir, checkpoint = distributed.agree(lambda: open_run(recipe, manifest, resume, force, previous))  # type: ignore[arg-type]
    if manifest is not None:
        write_text(run_dir / RECIPE, yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        write_manifest(run_dir, manifest)
        note = None  # a stream (data.streaming) is never held whole: the page shows its first records
        if inputs.stream is not None:
            note = f"streamed: the statistics of the first {len(inputs.train)} examples only"
        write_run_page(
            run_dir / "data-audit.html",
            inputs.train,
            inputs.tokenizer,
            recipe.train.max_length,
            note=note,
            tools=inputs.hygiene.get("tools"),
        )
        resuming = f" (resuming from {checkpoint.name})" if checkpoint else ""
        console.print(
            f"[bold]{recipe.name}[/]: {recipe.description or recipe.model.name} -> {run_dir}{resuming}"
        )
    return run_dir, checkpoint, manifest


def _eval_set(recipe: Recipe, inputs: Inputs) -> EvalSet:
    """The eval split tokenized in full (scored with sliding windows) and the prompts to generate from; a GRPO
    recipe's rewards score the greedy answers."""
    eval_set = prepare_eval(
        inputs.splits.eval, inputs.tokenizer, recipe.eval, recipe.train.max_length, recipe.train.loss_on
    )
    if stage(recipe.train.stage).evaluation == "rewards":
        from pipeline.train.stages.grpo import reward_functions

        eval_set.rewards = reward_functions(recipe)
    if stage(recipe.train.stage).evaluation == "distillation":  # the base's divergence loads the teacher
        from functools import partial

        from pipeline.train.teacher import fingerprint, load_teacher, resolve_teacher

        teacher = resolve_teacher(recipe)
        eval_set.teacher, eval_set.teacher_key = partial(load_teacher, recipe, teacher), fingerprint(teacher)
    return eval_set


def _finish(
    recipe: Recipe,
    run_dir: Path,
    trained: Trained,
    inputs: Inputs,
    eval_set: EvalSet | None,
    metrics: dict[str, Any],
) -> None:
    """On the main process: save, check the saved result, evaluate the adapted model, write report and card."""
    from pipeline.hub.card import describe_hardware, write_model_card
    from pipeline.models.artifacts import load_target
    from pipeline.models.saving import save_adapter
    from pipeline.train.checks import run_checks

    trainer, tokenizer = trained.trainer, inputs.tokenizer
    save_adapter(trainer.model, tokenizer, run_dir / "adapter", save=trainer.save_model)
    # Mixed precision wrapped the model's forward in autocast; checks and evaluation run it as the base was
    # run before training (and as a reload runs it), so take that wrapper off again.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if distributed.is_sharded(trainer):  # FSDP/ZeRO-3 weights live on all ranks: use the saved adapter
        distributed.load_alone()
        model = load_target(str(run_dir)).model
    metrics["checks"] = run_checks(model, tokenizer, recipe, run_dir / "adapter")
    teacher = getattr(trainer, "teacher_model", None)
    if eval_set is not None and eval_set.teacher is not None and teacher is not None:
        eval_set.teacher = lambda: trainer.accelerator.unwrap_model(teacher)  # the one trl trained with
    if eval_set is not None:
        console.print("Evaluating the adapted model ...")
        metrics["adapted"] = evaluate_model(
            model, tokenizer, recipe.eval, eval_set, recipe.data.system_prompt
        )
    metrics["train"]["hardware"] = describe_hardware()
    write_results(run_dir, recipe, metrics, eval_set)
    write_model_card(run_dir, recipe, metrics)
