"""The `pipeline` app: registers every command group and turns a PipelineError into one line and an exit code.

Heavy imports happen inside the commands, so `--help` stays instant."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer

from pipeline.cli import environment, evaluate, export, inference, ship, train
from pipeline.cli.data import data_app, tokens
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
        "gguf",  # its writer logs every file's tensor count at INFO
        "torch",
        "absl",  # rouge_score logs "Using default tokenizer." on every scorer
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Notices a user cannot act on: peft cannot read an offline Hub id's config when saving an adapter (added
    # tokens are tracked by pipeline.models.adapters instead), and peft/trl call a property transformers 5 deprecated.
    warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
    warnings.filterwarnings("ignore", message="Unable to fetch remote file", category=UserWarning)
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


app.command(cls=train.KeepsArguments)(train.finetune)  # --launch passes the user's own arguments on
app.command()(train.validate)
app.command("eval")(evaluate.evaluate)
for command in (
    train.plan,
    ship.merge,
    ship.push,
    export.export,
    train.recipes,
    inference.generate,
    inference.chat,
    inference.serve,
    tokens,
    environment.env,
):
    app.command()(command)
app.add_typer(data_app, name="data")


def main() -> None:
    """Run the CLI; a PipelineError becomes one line on stderr and a non-zero exit."""
    from pipeline.train.distributed import shutdown

    try:
        _run()
    finally:
        shutdown()


def _run() -> None:
    _quiet_libraries()
    from pipeline.train.resume import normalize_resume_argv

    try:
        app(args=normalize_resume_argv(sys.argv[1:]))
    except PipelineError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (
        Exception
    ) as exc:  # a full or read-only disk becomes one line (torch, safetensors and OSError alike)
        from pipeline.train.guards import storage_error

        error = storage_error(exc)
        if error is None:
            if os.environ.get("PIPELINE_TRACEBACK", "").strip() in ("1", "true", "yes"):
                raise
            from pipeline.cli.crash import report_internal_error

            sys.exit(report_internal_error(exc, sys.argv[1:]))
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
