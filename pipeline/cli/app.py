"""The `pipeline` command line: heavy imports happen inside commands so `--help` stays instant."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer
from rich.console import Console

from pipeline import generation_options as gen
from pipeline.cli_data import OVERRIDES_HELP, data_app, tokens
from pipeline.errors import PipelineError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune causal language models with LoRA/QLoRA/DoRA or full fine-tuning, then evaluate and ship them.",
)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our own rich progress bar covers training; these silence per-file download/load/map bars.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in (
        "transformers",
        "datasets",
        "bitsandbytes",
        "accelerate",
        "peft",
        "trl",
        "sentence_transformers",
        "httpx",
        "httpx2",
        "huggingface_hub",
        "torch",
        "absl",  # rouge_score logs "Using default tokenizer." on every scorer
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Notices a user cannot act on: peft cannot read an offline Hub id's config when saving an adapter (added
    # tokens are tracked by pipeline.adapters instead), and peft/trl call a property transformers 5 deprecated.
    warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
    warnings.filterwarnings("ignore", message="Unable to fetch remote file", category=UserWarning)
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


@app.command()
def finetune(
    recipe: str = typer.Argument(
        None, help="Recipe name (recipes/<name>.yaml) or path; default lora-small.", show_default=False
    ),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    resume: str = typer.Option(
        None,
        "--resume",
        metavar="[RUN]",
        show_default=False,
        help="Continue from the newest complete checkpoint of RUN (a run folder), or of "
        "this recipe's newest run when RUN is left out.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Resume or re-run even though the recipe, data or world size changed (prints what changed).",
    ),
    from_manifest: str = typer.Option(
        None,
        "--from-manifest",
        metavar="MANIFEST",
        show_default=False,
        help="Re-run the configuration recorded in runs/<run>/manifest.json.",
    ),
) -> None:
    """Train an adapter (or the full model), evaluate base vs adapted and write runs/<recipe>-<time>/."""
    from pipeline.resume import recipe_for_finetune
    from pipeline.workflow import finetune as run_finetune

    loaded, previous = recipe_for_finetune(recipe, overrides or [], resume, from_manifest)
    run_finetune(loaded, resume=resume, force=force, previous=previous)


@app.command()
def validate(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
) -> None:
    """Check a recipe (and its trl/peft settings) without loading any weights."""
    from pipeline.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    typer.echo(f"{loaded.path}: OK ({loaded.adapter.method}, {loaded.model.name})")


@app.command("eval")
def evaluate(
    target: str = typer.Argument(..., help="Run folder, adapter folder or Hub id, or a merged/base model."),
    overrides: list[str] = typer.Argument(
        None, help="Dotted overrides such as eval.max_examples=16.", show_default=False
    ),
    recipe: str = typer.Option(
        None,
        "--recipe",
        help="Recipe whose eval split and eval settings to use (default: a run folder's own recipe).",
    ),
    data: str = typer.Option(None, "--data", help="JSONL file (or Hub data set) to evaluate on instead."),
    base: str = typer.Option(None, "--base", help="Model to compare against (default: the adapter's base)."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Also evaluate the base and compare."),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Results folder (default: <run>/eval-<time>/ or runs/eval-<target>-<time>/).",
    ),
    fail_if_worse: bool = typer.Option(
        None,
        "--fail-if-worse/--no-fail-if-worse",
        show_default=False,
        help="Exit non-zero when worse than the base (default: eval.fail_if_worse).",
    ),
    safety: bool = typer.Option(
        False,
        "--safety",
        help="Also report refusal / over-refusal rates on the bundled "
        "safety prompts (same as eval.safety=true).",
    ),
) -> None:
    """Perplexity, answer similarity, lexical overlap and speed of TARGET vs its base; writes a report."""
    from pipeline.evaluation.command import run_eval

    overrides = [*(overrides or []), *(["eval.safety=true"] if safety else [])]
    run_eval(target, recipe, data, overrides, output, base, compare, fail_if_worse)


@app.command()
def plan(
    recipe: str = typer.Argument(..., help="Recipe name or path."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP, show_default=False),
    gpus: int = typer.Option(1, "--gpus", min=1, help="Devices the run is launched on."),
    gpu_memory: str = typer.Option(
        None, "--gpu-memory", help="Memory per device, e.g. 80GiB; proposes a fit."
    ),
    strategy: str = typer.Option("ddp", help="ddp, fsdp, zero2 or zero3 (how state is split over --gpus)."),
    cpu: bool = typer.Option(False, "--cpu", help="Plan a CPU run (process RAM, fp32) instead of a GPU."),
) -> None:
    """Estimate peak memory per device from config.json alone (no weights) and propose a batch that fits."""
    from pipeline.plan import parse_size, print_plan
    from pipeline.recipe import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    memory = parse_size(gpu_memory) if gpu_memory else None
    print_plan(loaded, gpus, memory, strategy, "cpu" if cpu else "cuda")  # type: ignore[arg-type]


@app.command()
def merge(
    run: str = typer.Argument(
        ..., help="Run folder (runs/<recipe>-<time>), adapter folder or Hub adapter id."
    ),
    output: str = typer.Option(None, "--output", "-o", help="Target folder; default RUN/merged."),
    dtype: str = typer.Option("auto", help="Saved dtype: auto (the recipe's), float32, bfloat16 or float16."),
    tolerance: float = typer.Option(
        None, help="Largest relative logit difference allowed vs base + adapter."
    ),
) -> None:
    """Fold the adapter into its base (QLoRA: a de-quantized base) and write a standalone, verified model."""
    from pathlib import Path

    from pipeline.merge import merge_run

    result = merge_run(run, Path(output) if output else None, dtype, tolerance)
    typer.echo(
        f"{result.output}: merged ({result.dtype}); max |logit diff| vs base + adapter {result.max_abs_diff:.2e} "
        f"(relative {result.relative_diff:.1e} <= {result.relative_tolerance:.0e}); reloads with identical "
        f"weights ({result.dtype} rounding moves logits by {result.reload_max_abs_diff:.1e}); {result.seconds:.1f} s"
    )


@app.command()
def push(
    run: str = typer.Argument(..., help="Run folder (runs/<recipe>-<time>) to push."),
    repo_id: str = typer.Option(..., "--repo-id", help="Target Hub repository, ORG/NAME."),
    private: bool = typer.Option(False, "--private/--public", help="Create the repository as private."),
    revision: str = typer.Option(None, "--revision", help="Branch to push to (created if missing)."),
    merged: bool = typer.Option(False, "--merged", help="Push the merged model (merging first if needed)."),
) -> None:
    """Push the adapter (or merged model) with its model card, metrics, manifest and recipe to the Hub."""
    from pipeline.hub import push_run

    result = push_run(run, repo_id, private=private, revision=revision, merged=merged)
    typer.echo(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")


@app.command()
def recipes() -> None:
    """List the shipped recipes with their one-line descriptions."""
    from rich.table import Table

    from pipeline.recipe import RECIPES_DIR, list_recipe_files, load_recipe

    table = Table(show_header=True, header_style="bold")
    table.add_column("recipe")
    table.add_column("description")
    for path in list_recipe_files():
        try:
            description = load_recipe(str(path), check=False).description
        except PipelineError as exc:
            description = f"[red]invalid: {exc}[/]"
        table.add_row(str(path.relative_to(RECIPES_DIR).with_suffix("")), description)
    Console().print(table)


@app.command()
def generate(
    target: gen.Target,
    prompt: str = typer.Argument(None, help="The prompt; '-' or nothing with piped input reads stdin."),
    file: str = typer.Option(None, "--file", "-f", help="JSONL of {prompt} or {messages}; '-' = stdin."),
    output: str = typer.Option(None, "--output", "-o", help="Write JSONL answers here (default: stdout)."),
    system: gen.System = None,
    greedy: gen.Greedy = False,
    temperature: gen.Temperature = 0.7,
    top_p: gen.TopP = 0.9,
    top_k: gen.TopK = 0,
    min_p: gen.MinP = 0.0,
    repetition_penalty: gen.RepetitionPenalty = 1.0,
    max_new_tokens: gen.MaxNewTokens = 256,
    seed: gen.Seed = None,
    stop: gen.Stop = None,
    n: gen.Samples = 1,
    assistant: gen.Assistant = None,
    batch_size: int = typer.Option(8, min=1, help="Prompts generated together."),
    dtype: gen.Dtype = None,
    device: gen.Device = "auto",
) -> None:
    """Answer a prompt, a JSONL file of prompts (JSONL out) or stdin with a run, adapter or model."""
    from pathlib import Path

    from pipeline.generation_cli import gather_prompts, run_generate

    settings = gen.sampling(
        greedy, temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens, seed, stop, n
    )
    prompts = gather_prompts(prompt, file, system, sys.stdin)
    run_generate(
        target,
        prompts,
        settings,
        as_jsonl=file is not None or output is not None,
        output=Path(output) if output else None,
        batch_size=batch_size,
        assistant=assistant,
        dtype=dtype,
        device=device,
    )


@app.command()
def chat(
    target: gen.Target,
    system: gen.System = None,
    greedy: gen.Greedy = False,
    temperature: gen.Temperature = 0.7,
    top_p: gen.TopP = 0.9,
    top_k: gen.TopK = 0,
    min_p: gen.MinP = 0.0,
    repetition_penalty: gen.RepetitionPenalty = 1.0,
    max_new_tokens: gen.MaxNewTokens = 256,
    seed: gen.Seed = None,
    stop: gen.Stop = None,
    context_length: int = typer.Option(None, min=16, help="History budget in tokens; default: the model's."),
    assistant: gen.Assistant = None,
    stats: bool = typer.Option(False, "--stats", help="Print tokens and tokens/s after each answer."),
    dtype: gen.Dtype = None,
    device: gen.Device = "auto",
) -> None:
    """Chat in the terminal, answers streamed; /reset clears the history, /system TEXT sets a system prompt."""
    from pipeline.chat import run_chat
    from pipeline.generation_cli import load_for_inference

    settings = gen.sampling(
        greedy, temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens, seed, stop
    )
    loaded = load_for_inference(target, dtype, device)
    helper = load_for_inference(assistant, dtype, device).model if assistant else None
    run_chat(
        loaded.model,
        loaded.tokenizer,
        settings,
        system=system,
        context_length=context_length,
        assistant_model=helper,
        stats=stats,
    )


@app.command()
def serve(
    target: gen.Target,
    adapter: list[str] = typer.Option(
        None, "--adapter", help="Another adapter on the base: NAME=PATH_OR_ID."
    ),
    name: str = typer.Option(None, help="Model id of TARGET in the API; default: its folder name or Hub id."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep 127.0.0.1 unless behind a proxy."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: str = typer.Option(
        None,
        envvar="PIPELINE_API_KEY",
        show_default=False,
        help="Require 'Authorization: Bearer KEY' (or set PIPELINE_API_KEY).",
    ),
    max_tokens: int = typer.Option(256, min=1, help="Completion length when a request gives no max_tokens."),
    context_length: int = typer.Option(None, min=16, help="Prompt + completion limit; default: the model's."),
    assistant: gen.Assistant = None,
    dtype: gen.Dtype = None,
    device: gen.Device = "auto",
) -> None:
    """OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions) over a run and adapters."""
    from pipeline.serve import serve_target

    serve_target(
        target, adapter or [], name, host, port, api_key, max_tokens, context_length, assistant, dtype, device
    )


app.command()(tokens)
app.add_typer(data_app, name="data")


def main() -> None:
    """Run the CLI; a PipelineError becomes one line on stderr and a non-zero exit."""
    _quiet_libraries()
    from pipeline.resume import normalize_resume_argv

    try:
        app(args=normalize_resume_argv(sys.argv[1:]))
    except PipelineError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (
        Exception
    ) as exc:  # a full or read-only disk becomes one line (torch, safetensors and OSError alike)
        from pipeline.guards import storage_error

        error = storage_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
