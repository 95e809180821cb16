"""The `pipeline` app: registers every command group and turns a PipelineError into one line and an exit code.

Heavy imports happen inside the commands, so `--help` stays instant."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Any

import typer

from pipeline.cli import environment, evaluate, export, inference, ship, studio, train
from pipeline.cli.data import data_app, tokens
from pipeline.errors import PipelineError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune causal language models with LoRA/QLoRA/DoRA or full fine-tuning, then evaluate and ship them.",
)


LIBRARY_LOGGERS = (
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
)
# Where a deprecation that concerns us is raised: our own modules (a library's warning about our call points
# at our line) and the libraries we drive.
DRIFT_MODULES = ("pipeline", "trl", "transformers", "peft", "accelerate")
# Deprecations inside the libraries that no recipe or call of ours can change, shown with -v only: peft and
# trl read a property transformers 5 renamed.
NOT_OURS = ("`is_gradient_checkpointing` is deprecated",)
VERBOSE_ENV = "PIPELINE_VERBOSE"


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our own rich progress bar covers training; these silence per-file download/load/map bars.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Notices a user cannot act on: peft cannot read an offline Hub id's config when saving an adapter (added
    # tokens are tracked by pipeline.models.adapters instead).
    warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
    warnings.filterwarnings("ignore", message="Unable to fetch remote file", category=UserWarning)


def show_drift(verbose: bool) -> None:
    """Show each DeprecationWarning and FutureWarning raised about our calls or inside trl, transformers, peft
    or accelerate once, as one line on stderr; verbose: every module's, and the libraries' WARNING log lines.

    The libraries' INFO logs stay quiet, but an upgrade that deprecates what we call is seen on the first run."""
    warnings.showwarning = _one_line
    module = "" if verbose else rf"({'|'.join(DRIFT_MODULES)})(\.|$)"
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("once", category=category, module=module)
    if verbose:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        return
    for message in NOT_OURS:  # filters added last are matched first
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)


def _one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: Any = None,
) -> None:
    """warnings.showwarning as one line: `warning: FutureWarning: <first line> (<package/file.py>:<line>)`."""
    where = filename.rpartition("site-packages/")[2]
    if os.path.isabs(where) and where.startswith(os.getcwd() + os.sep):
        where = os.path.relpath(where)
    text = (str(message).strip().splitlines() or [""])[0]
    with contextlib.suppress(OSError):  # a closed stderr loses the warning, as the stdlib's showwarning does
        print(f"warning: {category.__name__}: {text} ({where}:{lineno})", file=file or sys.stderr)


@app.callback()
def options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        envvar=VERBOSE_ENV,
        help="Show every deprecation warning and the libraries' WARNING log lines (default: a deprecation "
        "that trl, transformers, peft or accelerate raise, once on one line).",
    ),
) -> None:
    """Options of every command (before the command's name: `pipeline -v finetune ...`)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # the processes `finetune --launch` starts are verbose too
    show_drift(verbose)


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
    studio.studio,
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
