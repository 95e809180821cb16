"""Evaluate one model on an eval set (perplexity, generations, similarity, lexical overlap, speed),
then compare base and adapted, write the results and apply the regression gate.

`pipeline finetune` calls evaluate_model() for the base before training and for the adapted model after,
then write_results() and enforce_gate(); `pipeline eval` (pipeline.evaluation.command) does the same for
a run folder, an adapter or a model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import EvalSpec, Recipe
from pipeline.data.formatting import Messages, Tools, prompt_messages
from pipeline.data.tokenize import encode_record
from pipeline.errors import DataError, RecipeError
from pipeline.evaluation import lexical
from pipeline.evaluation.distillation import teacher_divergence
from pipeline.evaluation.embedding import closer_summary
from pipeline.evaluation.evaluate_modules import load_module
from pipeline.evaluation.forgetting import compare as compare_outside
from pipeline.evaluation.gate import check_gate
from pipeline.evaluation.preference import (
    compare_completions,
    compare_pairs,
    prepare_completions,
    prepare_pairs,
    score_completions,
    score_pairs,
)
from pipeline.evaluation.reward_model import evaluate_reward_model
from pipeline.inference.generation import Sampling, generate
from pipeline.models.heads import is_reward_model
from pipeline.models.merged_view import adapter_merged, can_merge
from pipeline.runs.metrics import SCHEMA_VERSION as METRICS_SCHEMA
from pipeline.train.rewards import score

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
UNTRUNCATED = 1 << 30  # eval rows keep every token; long ones are scored with sliding windows instead


@dataclass
class EvalSet:
    """Eval examples tokenized in full for perplexity, and prompts/references for generation."""

    rows: list[dict[str, Any]]
    prompts: list[Messages]
    references: list[str]
    window: int
    stride: int
    row_records: list[int]  # index in the eval records of each row (rows without a scored token are dropped)
    prompt_records: list[int]  # index in the eval records of each prompt
    prompt_tools: list[Tools | None] | None = None  # the tools each prompt's record offered, if any
    pairs: list[dict[str, list[int]]] | None = None  # preference pairs (pipeline.evaluation.preference)
    completions: list[dict[str, Any]] | None = None  # KTO's labelled completions (the same module)
    rewards: tuple[list[Any], list[float]] | None = None  # GRPO's reward functions and weights
    # Distillation: the teacher (loaded when called) and what identifies it (the base-metrics cache key).
    teacher: Callable[[], Any] | None = None
    teacher_key: str | None = None


def prepare_eval(
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    spec: EvalSpec,
    max_length: int,
    loss_on: str,
) -> EvalSet:
    """Tokenize the first eval.max_examples records in full with train.loss_on's masks; pick
    eval.generate_examples prompts. Windows are eval.context_length tokens, else max_length (train.max_length)."""
    labelled = prepare_completions(records, tokenizer, spec.max_examples, max_length)
    # Undesirable completions (KTO's label: false) are not answers to score or to compare generations with.
    records = [r for r in records if r.get("label", True)]
    window = spec.context_length or max_length
    stride = spec.stride or max(1, window // 2)
    if stride >= window:
        raise RecipeError(
            f"eval.stride ({stride}) must be smaller than the window ({window} tokens); lower it."
        )
    rows, row_records = [], []
    for index, record in enumerate(records[: spec.max_examples]):
        try:
            row = encode_record(record, tokenizer, UNTRUNCATED, loss_on)
        except ValueError as exc:  # formatting.TemplateMismatch
            raise DataError(f"{record.get('location', f'eval record {index}')}: {exc}") from None
        if any(row["assistant_masks"]):
            rows.append({"input_ids": row["input_ids"], "assistant_masks": row["assistant_masks"]})
            row_records.append(index)
    if not rows:
        raise DataError("eval data: no example has a token to score; check data.eval and train.loss_on.")
    prompt_records = [i for i, r in enumerate(records) if "messages" in r][: spec.generate_examples]
    pairs = [prompt_messages(records[i]["messages"]) for i in prompt_records]
    return EvalSet(
        rows=rows,
        prompts=[p for p, _ in pairs],
        references=[r for _, r in pairs],
        window=window,
        stride=stride,
        row_records=row_records,
        prompt_records=prompt_records,
        prompt_tools=[records[i].get("tools") for i in prompt_records],
        pairs=prepare_pairs(records, tokenizer, spec.max_examples, max_length)
        if any("rejected" in r for r in records)
        else None,
        completions=labelled or None,
    )


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: EvalSpec,
    data: EvalSet,
    system_prompt: str | None = None,
) -> dict[str, Any]:
    """Every metric for one model; `per_example` holds per-example values (for eval_examples.jsonl).
    system_prompt (data.system_prompt) is given to the safety prompts as training gave it to every record.
    A reward model (train.stage: reward) is scored on the eval pairs only (pipeline.evaluation.reward_model)."""
    if is_reward_model(model):
        if not data.pairs:
            raise DataError("eval data: a reward model is evaluated on preference pairs and there are none.")
        return evaluate_reward_model(model, data.pairs, spec.batch_size, tokenizer.pad_token_id)
    ppl = load_module("trained_token_perplexity").compute(
        input_ids=[row["input_ids"] for row in data.rows],
        assistant_masks=[row["assistant_masks"] for row in data.rows],
        model=model,
        batch_size=spec.batch_size,
        window=data.window,
        stride=data.stride,
    )
    result: dict[str, Any] = {
        key: ppl[key]
        for key in (
            "perplexity",
            "perplexity_all_tokens",
            "nll",
            "tokens",
            "tokens_all",
            "examples",
            "windows",
        )
    }
    result["perplexity_per_example"] = ppl["per_example_distribution"]
    result["seconds"] = {"perplexity": ppl["seconds"]}
    per_example: dict[str, list[Any]] = {"perplexity": ppl["per_example"]}
    if data.prompts:
        merged = can_merge(model)
        with adapter_merged(model):  # decoding at the base's speed; perplexity above stays unmerged
            generations = generate(
                model,
                tokenizer,
                data.prompts,
                Sampling(max_new_tokens=spec.max_new_tokens),
                batch_size=spec.batch_size,
                tools=data.prompt_tools,
            )
        started = time.perf_counter()
        similarity = load_module("answer_similarity").compute(
            predictions=generations.texts, references=data.references, model=spec.embedding_model
        )
        scores = similarity.pop("scores")
        result["similarity"] = similarity
        result["lexical"] = lexical.corpus_scores(generations.texts, data.references)
        result["generation"] = {
            "examples": len(data.prompts),
            "new_tokens": generations.new_tokens,
            "seconds": generations.seconds,
            "tokens_per_second": generations.tokens_per_second,
            "adapter_merged": merged,
        }
        result["seconds"].update(generation=generations.seconds, scoring=time.perf_counter() - started)
        per_example.update(
            answer=generations.texts,
            similarity=scores,
            **lexical.per_example(generations.texts, data.references),
        )
        if data.rewards is not None:  # GRPO: the recipe's rewards of the greedy answers
            rewards = score(*data.rewards, data.prompts, generations.texts, data.references)
            result["reward"] = {"mean": sum(rewards) / len(rewards), "n": len(rewards)}
            per_example["reward"] = rewards
    if data.teacher is not None:  # distillation: the student's distance from its teacher
        kl = teacher_divergence(
            model, data.teacher(), data.rows, spec.batch_size, data.window, tokenizer.pad_token_id
        )
        result["seconds"]["distillation"] = kl.pop("seconds")
        result["distillation"] = kl
    if data.pairs:
        result["preference"] = score_pairs(model, data.pairs, spec.batch_size, tokenizer.pad_token_id)
    if data.completions:
        result["labelled"] = score_completions(
            model, data.completions, spec.batch_size, tokenizer.pad_token_id
        )
    if spec.general_text:  # perplexity outside the training domain (pipeline.evaluation.general_text)
        from pipeline.evaluation.general_text import general_perplexity

        result["general_text"] = general_perplexity(model, tokenizer, spec)
        result["seconds"]["general_text"] = result["general_text"]["seconds"]
    if spec.benchmarks:  # lm-evaluation-harness tasks on the model held here (pipeline.evaluation.benchmarks)
        from pipeline.evaluation.benchmarks import run_benchmarks

        result["benchmarks"] = run_benchmarks(model, tokenizer, spec)
        result["seconds"]["benchmarks"] = result["benchmarks"]["seconds"]
    if spec.safety:  # the bundled refusal / over-refusal prompt set (pipeline.evaluation.safety)
        from pipeline.evaluation.safety import evaluate_safety

        result["safety"] = evaluate_safety(
            model,
            tokenizer,
            max_new_tokens=spec.max_new_tokens,
            batch_size=spec.batch_size,
            system_prompt=system_prompt,
        )
    result["per_example"] = per_example
    return result


def _delta(base: Any, adapted: Any) -> float | None:
    return adapted - base if isinstance(base, (int, float)) and isinstance(adapted, (int, float)) else None


def compare(base: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any]:
    """Deltas (adapted - base) of every metric, the relative perplexity change and per-example win rates."""
    deltas = {
        "perplexity": _delta(base.get("perplexity"), adapted.get("perplexity")),
        "perplexity_all_tokens": _delta(
            base.get("perplexity_all_tokens"), adapted.get("perplexity_all_tokens")
        ),
        "similarity_mean": _delta(
            base.get("similarity", {}).get("mean"), adapted.get("similarity", {}).get("mean")
        ),
    }
    if "reward_model" in base or "reward_model" in adapted:  # train.stage: reward
        deltas["reward_model_accuracy"] = _delta(
            base.get("reward_model", {}).get("accuracy"), adapted.get("reward_model", {}).get("accuracy")
        )
    if "distillation" in base or "distillation" in adapted:
        deltas["teacher_kl"] = _delta(
            (base.get("distillation") or {}).get("kl"), (adapted.get("distillation") or {}).get("kl")
        )
    for name in ("rougeL", "chrf", "bleu"):
        deltas[name] = _delta(base.get("lexical", {}).get(name), adapted.get("lexical", {}).get(name))
    ppl_b, ppl_a = (
        base.get("per_example", {}).get("perplexity", []),
        adapted.get("per_example", {}).get("perplexity", []),
    )
    # NaN marks an example without scored tokens (NaN != NaN).
    pairs = [(b, a) for b, a in zip(ppl_b, ppl_a, strict=True) if b == b and a == a]
    base_ppl = base.get("perplexity")
    outside, forgetting = compare_outside(base, adapted)
    deltas.update(outside)
    preference = compare_pairs(base.get("preference", {}), adapted.get("preference", {}))
    labelled = compare_completions(base.get("labelled", {}), adapted.get("labelled", {}))
    return {
        **({"preference": preference} if preference else {}),
        **({"labelled": labelled} if labelled else {}),
        **({"forgetting": forgetting} if forgetting else {}),
        "deltas": deltas,
        "perplexity_relative": adapted["perplexity"] / base_ppl - 1
        if base_ppl and adapted.get("perplexity")
        else None,
        "perplexity_improved_rate": sum(a < b for b, a in pairs) / len(pairs) if pairs else None,
        **closer_summary(
            base.get("per_example", {}).get("similarity", []),
            adapted.get("per_example", {}).get("similarity", []),
        ),
    }


def example_rows(metrics: dict[str, Any], data: EvalSet) -> list[dict[str, Any]]:
    """One row per eval record: prompt, reference and each side's per-example values and answer."""
    rows: dict[int, dict[str, Any]] = {}
    for position, record in enumerate(data.prompt_records):
        prompt = data.prompts[position][-1]["content"] if data.prompts[position] else ""
        rows[record] = {"record": record, "prompt": prompt, "reference": data.references[position]}
    for side in ("base", "adapted"):
        for key, values in metrics.get(side, {}).get("per_example", {}).items():
            aligned = data.row_records if key == "perplexity" else data.prompt_records
            for record, value in zip(aligned, values, strict=False):
                rows.setdefault(record, {"record": record})[f"{side}_{key}"] = value
    return [rows[r] for r in sorted(rows)]


def write_results(
    out_dir: Path, recipe: Recipe, metrics: dict[str, Any], data: EvalSet | None
) -> dict[str, Any]:
    """Add comparison and gate; write metrics.json, eval_examples.jsonl, report.md, report.html, plots/.

    Returns the metrics as written (per-example lists moved out to eval_examples.jsonl).
    """
    from pipeline.evaluation.report import write_report

    if "base" in metrics and "adapted" in metrics:
        metrics["comparison"] = compare(metrics["base"], metrics["adapted"])
        answers = [metrics[side].get("per_example", {}).get("answer") for side in ("base", "adapted")]
        if recipe.eval.judge is not None and data is not None and all(answers):
            from pipeline.evaluation.judge import judge_answers

            questions = [p[-1]["content"] if p else "" for p in data.prompts]
            metrics["comparison"]["judge"] = judge_answers(recipe.eval.judge, questions, *answers)  # type: ignore[arg-type]
    if "base" in metrics and "adapted" in metrics:  # the gate compares with the base; none without it
        metrics["gate"] = check_gate(metrics, recipe.eval)
    rows = example_rows(metrics, data) if data is not None else []
    for side in ("base", "adapted"):
        metrics.get(side, {}).pop("per_example", None)
        for section in ("general_text", "benchmarks"):  # their worst examples are in comparison.forgetting
            (metrics.get(side, {}).get(section) or {}).pop("per_example", None)
    metrics.setdefault("schema_version", METRICS_SCHEMA)
    write_report(out_dir, recipe, metrics, rows)
    return metrics
