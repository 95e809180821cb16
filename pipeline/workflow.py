"""finetune(recipe): the one place where load, train, save, evaluate and report are put in order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

from pipeline.data import Splits, load_splits, tokenize_records
from pipeline.evaluation.embedding import similarities, summarize
from pipeline.evaluation.perplexity import perplexity
from pipeline.evaluation.report import print_summary, write_report
from pipeline.export import save_adapter, write_text
from pipeline.formatting import prompt_messages
from pipeline.generation import Sampling, generate
from pipeline.recipe import Recipe

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

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
    root = Path(recipe.train.output_dir)
    candidate = root / f"{recipe.name}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{recipe.name}-{stamp}-{suffix}"
    candidate.mkdir(parents=True)
    return candidate


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    recipe: Recipe,
    eval_dataset: Dataset,
    eval_records: list[dict[str, Any]],
) -> dict[str, Any]:
    """Perplexity on the eval split and greedy answers with their similarity to the references."""
    spec = recipe.eval
    subset = eval_dataset.select(range(min(spec.max_examples, len(eval_dataset))))
    result = perplexity(model, subset, batch_size=spec.batch_size)
    result.pop("per_example")
    prompts, references = zip(*(prompt_messages(r["messages"]) for r in eval_records[: spec.generate_examples]))
    if prompts:
        generations = generate(model, tokenizer, list(prompts), Sampling(max_new_tokens=spec.max_new_tokens),
                               batch_size=spec.batch_size)
        scores = similarities(generations.texts, list(references), spec.embedding_model)
        result.update(similarity=summarize(scores), similarity_per_example=scores, answers=generations.texts,
                      generation_tokens_per_second=generations.tokens_per_second)
    return result


def _samples(eval_records: list[dict[str, Any]], base: dict[str, Any], adapted: dict[str, Any], count: int) -> list:
    samples = []
    for index, record in enumerate(eval_records[: min(count, len(base.get("answers", [])))]):
        prompt, reference = prompt_messages(record["messages"])
        samples.append({"prompt": prompt[-1]["content"], "reference": reference,
                        "base": base["answers"][index], "adapted": adapted["answers"][index]})
    return samples


def finetune(recipe: Recipe) -> RunResult:
    """Train the recipe's adapter, evaluate base vs adapted, and write the run folder."""
    import torch

    from transformers import PrinterCallback

    from pipeline.modeling import load_base_model, load_tokenizer
    from pipeline.progress import RichProgressCallback
    from pipeline.training import build_trainer

    torch.manual_seed(recipe.train.seed)
    run_dir = new_run_dir(recipe)
    write_text(run_dir / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    console.print(f"[bold]{recipe.name}[/]: {recipe.description or recipe.model.name} -> {run_dir}")

    splits: Splits = load_splits(recipe)
    tokenizer = load_tokenizer(recipe.model)
    train_ds = tokenize_records(splits.train, tokenizer, recipe, desc="Tokenizing train")
    eval_ds = tokenize_records(splits.eval, tokenizer, recipe, desc="Tokenizing eval") if splits.eval else None
    model = load_base_model(recipe.model)

    metrics: dict[str, Any] = {"recipe": recipe.name, "model": recipe.model.name, "skipped_records": splits.skipped}
    run_eval = recipe.eval.enabled and eval_ds is not None
    if run_eval:
        console.print("Evaluating the base model ...")
        metrics["base"] = evaluate_model(model, tokenizer, recipe, eval_ds, splits.eval)

    trainer = build_trainer(recipe, run_dir, model, tokenizer, train_ds, None, callbacks=[RichProgressCallback()])
    trainer.remove_callback(PrinterCallback)  # the progress bar shows the loss; no raw log dicts on stdout
    started = time.perf_counter()
    output = trainer.train()
    metrics["train"] = {"steps": output.global_step, "loss": output.training_loss,
                        "seconds": time.perf_counter() - started, "examples": len(train_ds),
                        "log_history": trainer.state.log_history}
    save_adapter(trainer.model, tokenizer, run_dir / "adapter", save=trainer.save_model)

    if run_eval:
        console.print("Evaluating the adapted model ...")
        metrics["adapted"] = evaluate_model(trainer.model, tokenizer, recipe, eval_ds, splits.eval)
    samples = _samples(splits.eval, metrics.get("base", {}), metrics.get("adapted", {}), recipe.eval.samples)
    write_report(run_dir, metrics, samples)
    from pipeline.card import build_model_card

    write_text(run_dir / "README.md", build_model_card(recipe, metrics))
    if run_eval:
        print_summary(metrics, run_dir, console)
    return RunResult(run_dir=run_dir, metrics=metrics)
