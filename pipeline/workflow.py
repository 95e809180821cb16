"""finetune(recipe): the one place where load, train, save, evaluate and report are put in order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from pipeline import distributed
from pipeline.data import Splits, load_splits, tokenize_records
from pipeline.evaluation.gate import enforce_gate
from pipeline.evaluation.report import print_summary
from pipeline.evaluation.runner import evaluate_model, prepare_eval, write_results
from pipeline.export import save_adapter, write_text
from pipeline.recipe import Recipe

log = logging.getLogger(__name__)
console = Console(stderr=True)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]


def new_run_dir(recipe: Recipe) -> Path:
    """A fresh runs/<recipe>-<UTC time>/ folder; never reuses an existing one."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    from pipeline.errors import RecipeError
    from pipeline.guards import safe_child

    root = Path(recipe.train.output_dir)
    if root.exists() and not root.is_dir():
        raise RecipeError(f"train.output_dir '{root}' is a file; point it at a folder for runs.")
    candidate = safe_child(root, f"{recipe.name}-{stamp}", "run name")
    suffix = 1
    while True:
        try:
            candidate.mkdir(
                parents=True
            )  # no exist_ok: a concurrent run never shares (or overwrites) a folder
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = root / f"{recipe.name}-{stamp}-{suffix}"


def finetune(
    recipe: Recipe, resume: str | None = None, force: bool = False, previous: dict[str, Any] | None = None
) -> RunResult:
    """Train the recipe's adapter, evaluate base vs adapted, and write the run folder.

    resume: a run folder or 'latest' to continue from its newest complete checkpoint; force: accept changed
    inputs on resume; previous: the manifest a --from-manifest re-run repeats.
    """
    import torch
    from transformers import PrinterCallback

    from pipeline.guards import NonFiniteGuard, check_target_modules
    from pipeline.hygiene import apply_hygiene
    from pipeline.manifest import build_manifest, finish_manifest, write_manifest
    from pipeline.modeling import load_base_model, load_tokenizer
    from pipeline.progress import RichProgressCallback
    from pipeline.resume import open_run, resume_command
    from pipeline.signals import StopOnSignal
    from pipeline.training import build_trainer

    torch.manual_seed(recipe.train.seed)
    # Under `accelerate launch` rank 0 alone names, writes and reports the run; see pipeline.distributed.
    main = distributed.is_main_process()
    clock = time.perf_counter()
    distributed.prepare_assets(recipe)
    with distributed.local_main_first():  # one rank per machine converts/tokenizes; the rest reuse its cache
        splits: Splits = load_splits(recipe)
        hygiene = apply_hygiene(recipe, splits)  # data.dedup / data.redact; refuses contaminated eval data
        splits = hygiene.splits
        tokenizer = load_tokenizer(recipe.model)
        train_ds = tokenize_records(
            splits.train, tokenizer, recipe, desc="Tokenizing train", skipped=splits.skipped
        )
        eval_ds = (
            tokenize_records(splits.eval, tokenizer, recipe, desc="Tokenizing eval", skipped=splits.skipped)
            if splits.eval
            else None
        )
    model = load_base_model(recipe.model)
    check_target_modules(recipe, model)
    # The run folder appears only once the inputs proved valid: a bad recipe, data file or model writes nothing.
    manifest = build_manifest(recipe, splits, tokenizer) if main else {}
    run_dir, checkpoint = distributed.agree(
        lambda: open_run(recipe, manifest, new_run_dir, resume, force, previous)
    )
    if main:
        write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        write_manifest(run_dir, manifest)
        from pipeline.audit import write_run_page

        write_run_page(run_dir / "data-audit.html", train_ds, tokenizer, recipe.train.max_length)
        resuming = f" (resuming from {checkpoint.name})" if checkpoint else ""
        console.print(
            f"[bold]{recipe.name}[/]: {recipe.description or recipe.model.name} -> {run_dir}{resuming}"
        )
    seconds = {"load": time.perf_counter() - clock}

    metrics: dict[str, Any] = {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "skipped_records": splits.skipped,
    }
    metrics["hygiene"] = hygiene.report
    run_eval = recipe.eval.enabled and eval_ds is not None
    eval_set = prepare_eval(splits.eval, tokenizer, recipe) if run_eval and main else None
    if run_eval and main:
        console.print("Evaluating the base model ...")
        metrics["base"] = evaluate_model(model, tokenizer, recipe, eval_set)

    stopper = StopOnSignal()
    trainer = build_trainer(
        recipe,
        run_dir,
        model,
        tokenizer,
        train_ds,
        None,
        callbacks=[RichProgressCallback(), NonFiniteGuard(), stopper],
    )
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss; no raw log dicts on stdout
    started = time.perf_counter()
    with stopper.active():
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    stopper.raise_if_stopped(resume_command(recipe, run_dir))
    seconds["train"] = time.perf_counter() - started
    metrics["train"] = {
        "steps": output.global_step,
        "loss": output.training_loss,
        "seconds": time.perf_counter() - started,
        "examples": len(train_ds),
        "log_history": trainer.state.log_history,
        "world_size": trainer.args.world_size,
    }
    if not main:
        trainer.save_model(str(run_dir / "adapter"))  # joins the gathers of sharded weights; rank 0 writes
        distributed.barrier()  # wait while rank 0 checks, evaluates and reports
        return RunResult(run_dir=run_dir, metrics=metrics)
    save_adapter(trainer.model, tokenizer, run_dir / "adapter", save=trainer.save_model)
    # Mixed precision wrapped the model's forward in autocast; checks and evaluation run it as the base was
    # run before training (and as a reload runs it), so take that wrapper off again.
    trained = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if distributed.is_sharded(trainer):  # FSDP/ZeRO-3 weights live on all ranks: use the saved adapter
        from pipeline.targets import load_target

        trained = load_target(str(run_dir)).model
    from pipeline.checks import run_checks

    metrics["checks"] = run_checks(trained, tokenizer, recipe, run_dir / "adapter")

    if run_eval:
        console.print("Evaluating the adapted model ...")
        metrics["adapted"] = evaluate_model(trained, tokenizer, recipe, eval_set)
    from pipeline.card import describe_hardware, write_model_card

    metrics["train"]["hardware"] = describe_hardware()
    write_results(run_dir, recipe, metrics, eval_set)
    write_model_card(run_dir, recipe, metrics)
    seconds["total"] = time.perf_counter() - clock
    finish_manifest(run_dir, manifest, seconds)
    if run_eval:
        print_summary(metrics, run_dir, console)
    distributed.barrier()
    enforce_gate(metrics, run_dir / "report.html")  # after every file is written; a failed gate never pushes
    from pipeline.hub import push_after_training

    push_after_training(run_dir, recipe)  # rank 0 only (the others returned above); failures only warn
    return RunResult(run_dir=run_dir, metrics=metrics)
