"""The model card (README.md) written into every run folder and pushed with the adapter."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import ModelSpec, Recipe
from pipeline.evaluation.report import comparison_rows
from pipeline.files import write_text
from pipeline.models.precision import resolve_dtype, resolved_precision
from pipeline.train.stages.registry import stage as training_stage

if TYPE_CHECKING:
    from huggingface_hub import EvalResult, ModelCard

LOSS_IMAGE = "loss_curve.png"
# comparison_rows() names that go into model-index -> metric types (Hub metric ids where one exists).
METRIC_TYPES = {
    "perplexity (trained tokens)": "perplexity",
    "perplexity (all tokens)": "perplexity",
    "answer similarity (mean cosine)": "cosine_similarity",
    "ROUGE-L F1": "rouge",
    "chrF": "chrf",
    "BLEU": "bleu",
}


def describe_hardware() -> str:
    """One line naming the accelerator (or CPU) this process runs on."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"{count} x {torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cores = torch.get_num_threads()
    processor = platform.processor() or "unknown model"
    return f"CPU {platform.machine()} ({processor}), {cores} threads, torch {torch.__version__}"


def is_hub_id(name: str) -> bool:
    """True for ORG/NAME ids (what Hub metadata accepts), false for local paths."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def method_name(recipe: Recipe) -> str:
    """Human name of the fine-tuning method: full fine-tuning, QLoRA, DoRA, rsLoRA or LoRA."""
    if recipe.adapter.method == "full":
        return "full fine-tuning"
    if recipe.model.quantization != "none":
        return f"QLoRA ({recipe.model.quantization})"
    return "DoRA" if recipe.adapter.use_dora else "rsLoRA" if recipe.adapter.use_rslora else "LoRA"


def _as_run(setting: str, used: str) -> str:
    """A machine-dependent setting (auto, native) with what it meant where the card is written (the run)."""
    return setting if setting == used else f"{setting} ({used} in this run)"


def _hyperparameters(recipe: Recipe) -> list[tuple[str, Any]]:
    adapter, train = recipe.adapter, recipe.train
    rows: list[tuple[str, Any]] = [("method", method_name(recipe))]
    if adapter.method == "lora":
        rows += [
            ("rank r", adapter.r),
            ("alpha", adapter.alpha),
            ("dropout", adapter.dropout),
            ("target modules", adapter.target_modules),
            ("modules to save", adapter.modules_to_save or "-"),
            ("init", adapter.init),
        ]
    steps = train.max_steps if train.max_steps > 0 else f"{train.epochs} epochs"
    warmup = f"{train.warmup_steps} steps" if train.warmup_steps else f"{train.warmup_ratio} of the steps"
    return [
        *rows,
        ("learning rate", train.learning_rate),
        ("scheduler", f"{train.lr_scheduler}, warmup {warmup}"),
        ("steps", steps),
        ("batch size x grad accum", f"{train.batch_size} x {train.grad_accum}"),
        ("max length (tokens)", train.max_length),
        ("loss on", train.loss_on),
        (
            "precision",
            _as_run(train.precision, resolved_precision(train.precision, recipe.model.quantization)),
        ),
        (
            "weight dtype",
            _as_run(recipe.model.dtype, str(resolve_dtype(recipe.model.dtype)).removeprefix("torch.")),
        ),
        ("packing / padding-free", f"{train.packing} / {train.padding_free}"),
        ("seed", train.seed),
    ]


def eval_results(recipe: Recipe, metrics: dict[str, Any]) -> list[EvalResult]:
    """Base and adapted metrics as Hub `model-index` entries on the eval data."""
    from huggingface_hub import EvalResult

    sources = recipe.data.eval or recipe.data.train
    dataset = sources[0].path
    split = sources[0].split if recipe.data.eval else f"held-out {recipe.data.eval_size} of train"
    results = benchmark_results(metrics)
    for name, base, adapted, _better in comparison_rows(metrics):
        for label, value in (("adapted", adapted), ("base model", base)):
            if value is None or name not in METRIC_TYPES:
                continue
            results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name="Supervised fine-tuning",
                    dataset_type=dataset,
                    dataset_name=Path(dataset).name if not is_hub_id(dataset) else dataset,
                    dataset_split=split,
                    metric_type=METRIC_TYPES[name],
                    metric_name=f"{name}, {label}",
                    metric_value=round(float(value), 6),
                )
            )
    return results


def benchmark_results(metrics: dict[str, Any]) -> list[EvalResult]:
    """The lm-eval benchmark scores of base and adapted as `model-index` entries, one data set per task."""
    from huggingface_hub import EvalResult

    results = []
    for label, side in (("adapted", "adapted"), ("base model", "base")):
        for task, scores in ((metrics.get(side) or {}).get("benchmarks") or {}).get("tasks", {}).items():
            for metric, value in scores.items():
                if metric in ("n", "main") or not isinstance(value, (int, float)):
                    continue
                results.append(
                    EvalResult(
                        task_type="text-generation",
                        task_name=f"lm-evaluation-harness {task}",
                        dataset_type=task,
                        dataset_name=task,
                        metric_type=metric,
                        metric_name=f"{task} {metric}, {label}",
                        metric_value=round(float(value), 6),
                    )
                )
    return results


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _eval_table(metrics: dict[str, Any]) -> str:
    if "base" not in metrics:  # eval.base: false
        rows = [f"| {name} | {_fmt(adapted)} |" for name, _base, adapted, _better in comparison_rows(metrics)]
        return "\n".join(["| metric | adapted |", "|---|---|", *rows])
    lines = ["| metric | base | adapted | change |", "|---|---|---|---|"]
    for name, base, adapted, better in comparison_rows(metrics):
        change = "-" if base is None or adapted is None else f"{adapted - base:+.4g} ({better} is better)"
        lines.append(f"| {name} | {_fmt(base)} | {_fmt(adapted)} | {change} |")
    return "\n".join(lines)


def _load_snippets(spec: ModelSpec, repo: str, merged: bool) -> str:
    if merged:
        return f"""```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}")
model = AutoModelForCausalLM.from_pretrained("{repo}")
```"""
    return f"""With plain peft (the base model `{spec.name}` is read from `adapter_config.json`):

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{repo}")
tokenizer = AutoTokenizer.from_pretrained("{repo}")  # the tokenizer and chat template it was trained with
messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                       return_tensors="pt")
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))
```

With this pipeline (base model, adapter and chat template in one call; `revision=` pins a branch or commit):

```python
from pipeline.models.artifacts import load_target

loaded = load_target("{repo}")  # loaded.model, loaded.tokenizer
```

or fold it into a standalone model: `pipeline merge {repo} --output merged/`."""


def _throughput(train: dict[str, Any]) -> str:
    """'312.4 tokens/s, 0.21 of the roofline (810 GFLOP/s, measured GEMMs ...)' or '-' when not recorded."""
    if not train.get("tokens_per_second"):
        return "-"
    text = f"{train['tokens_per_second']} real tokens/s"
    if "roofline_share" in train:
        line = train["roofline"]
        text += f", {train['roofline_share']} of the roofline ({line['gflops']} GFLOP/s, {line['source']})"
    return text


def write_loss_curve(metrics: dict[str, Any], target: Path) -> bool:
    """Render the report's training plot (loss and learning rate per step) to target; False if none."""
    from pipeline.evaluation.plots import training_plot

    history = metrics.get("train", {}).get("log_history", [])
    png = training_plot(history, metrics.get("base", {}).get("nll"), metrics.get("adapted", {}).get("nll"))
    if not png:
        return False
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(target)
    return True


def build_model_card(
    recipe: Recipe,
    metrics: dict[str, Any],
    *,
    repo_id: str | None = None,
    hardware: str | None = None,
    merged: bool = False,
    loss_image: str | None = None,
) -> ModelCard:
    """A Hub model card (metadata + Markdown) describing a finished run; repo_id fills the load snippets."""
    from huggingface_hub import ModelCard, ModelCardData

    base = recipe.model.name
    hub_datasets = [s.path for s in recipe.data.train + recipe.data.eval if is_hub_id(s.path)]
    results = eval_results(recipe, metrics)
    title = repo_id.split("/")[-1] if repo_id else f"{recipe.name}-{Path(base).name}"
    method = method_name(recipe)
    data = ModelCardData(
        base_model=base if is_hub_id(base) else None,
        base_model_relation="merge"
        if merged
        else "adapter"
        if recipe.adapter.method == "lora"
        else "finetune",
        datasets=sorted(set(hub_datasets)) or None,
        library_name="transformers" if merged or recipe.adapter.method == "full" else "peft",
        pipeline_tag="text-generation",
        tags=sorted({method.split(" ")[0].lower(), recipe.train.stage, "trl", "pipeline"}),
        model_name=title if results else None,
        eval_results=results or None,
    )
    train = metrics.get("train", {})
    seconds = train.get("seconds")
    sources = "\n".join(
        f"- `{s.path}` ({s.format}{', split ' + s.split if is_hub_id(s.path) else ''}"
        f"{', revision ' + s.revision if s.revision else ''})"
        for s in recipe.data.train
    )
    hyper = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in _hyperparameters(recipe))
    pinned = f" at revision `{recipe.model.revision}`" if recipe.model.revision else ""
    what = "merged model" if merged else "full fine-tune" if recipe.adapter.method == "full" else "adapter"
    curve = f"\n![training loss and learning rate per step]({loss_image})\n" if loss_image else ""
    parent = metrics.get("parent") or {}
    continued = (
        f"\nIt continues the adapter `{parent['adapter']}`"
        + (f" (run `{Path(parent['run']).name}`)" if parent.get("run") else "")
        + f", SHA-256 `{parent['sha256'][:12]}`, which was also the starting point of the comparison below.\n"
        if parent
        else ""
    )
    teacher = getattr(recipe.stage_settings, "teacher", None)  # distill.teacher (train.stage: distill)
    if teacher:
        continued += (
            f"\nIt was distilled from `{teacher}`: it learned that teacher's next-token distribution.\n"
        )
    repo = repo_id or "ORG/NAME"
    evaluation = (
        _eval_table(metrics) if metrics.get("base") or metrics.get("adapted") else "Evaluation was off."
    )
    compared = "base vs adapted" if metrics.get("base") else "adapted only: the base was not evaluated"
    content = f"""---
{data.to_yaml()}
---

# {title}

A {method} {what} for [`{base}`]({"https://huggingface.co/" + base if is_hub_id(base) else base}){pinned},
trained with {training_stage(recipe.train.stage).card} by this project's `pipeline finetune {recipe.name}`.
{recipe.description}
{continued}
## Training data

{sources}

{train.get("examples", "-")} training examples after formatting and filtering; the loss is on
{recipe.train.loss_on} tokens.

## Training procedure

| hyperparameter | value |
|---|---|
{hyper}

- optimizer steps: {train.get("steps", "-")}, final training loss: {_fmt(train.get("loss"))}
- training time: {_fmt(seconds) + " s" if seconds is not None else "-"}
- throughput: {_throughput(train)}
- hardware: {train.get("hardware") or hardware or "not recorded"}
{curve}
## Evaluation (held-out split, {compared})

{evaluation}

Perplexity is exp(mean negative log-likelihood) over the trained tokens of the eval split; answer
similarity is the cosine similarity of greedy answers to the reference answers under
`{recipe.eval.embedding_model}`.

## Intended use

Research and prototyping of assistants in the domain of the training data above, behind a human review step.
It inherits the licence, intended use and restrictions of the base model `{base}`.

## Limitations

- Trained on {train.get("examples", "few")} examples for {train.get("steps", "?")} steps: it knows only what
  that data and the base model contain, and can state wrong facts fluently.
- Evaluated only on the held-out split above, with automatic metrics; no human or safety evaluation.
- Biases of the base model and of the training data carry over.

## How to load

{_load_snippets(recipe.model, repo, merged)}
"""
    return ModelCard(content, ignore_metadata_errors=False)


def write_model_card(
    run_dir: Path, recipe: Recipe, metrics: dict[str, Any], repo_id: str | None = None, merged: bool = False
) -> Path:
    """Write README.md (and the loss-curve PNG it shows) into run_dir; returns the README path."""
    image = LOSS_IMAGE if write_loss_curve(metrics, run_dir / LOSS_IMAGE) else None
    card = build_model_card(recipe, metrics, repo_id=repo_id, merged=merged, loss_image=image)
    write_text(run_dir / "README.md", str(card))
    return run_dir / "README.md"
