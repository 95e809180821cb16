"""`pipeline export`: a verified GGUF for llama.cpp, or a GGUF + Modelfile for Ollama."""

from __future__ import annotations

import typer

from pipeline.cli.options import Target


def export(
    run: Target,
    fmt: str = typer.Option("gguf", "--format", "-f", help="gguf (one file) or ollama (GGUF + Modelfile)."),
    dtype: str = typer.Option("f16", help="GGUF weights: f16, bf16, q8_0 (8-bit blocks) or f32."),
    output: str = typer.Option(
        None, "--output", "-o", help="GGUF file (gguf) or folder (ollama); default RUN/export/<name>-<dtype>."
    ),
) -> None:
    """Merge the adapter, write a GGUF (tokenizer and chat template inside), check it with transformers' reader."""
    from pathlib import Path

    from pipeline.export.command import export_run

    result = export_run(run, fmt, dtype, Path(output) if output else None)
    check = result.check
    typer.echo(
        f"{result.gguf}: {result.dtype}, {result.bytes / 2**20:.1f} MiB; read back by transformers: max |logit diff| "
        f"{check.max_abs_diff:.2e} (relative {check.relative_diff:.1e} <= {check.relative_tolerance:.0e}), "
        f"same next token at {check.top1_agreement:.0%} of positions, same token ids on {check.sample_tokens} "
        f"sample tokens, chat template kept; {result.seconds:.1f} s"
    )
    if result.modelfile is not None:
        typer.echo(
            f"{result.modelfile}: {result.chat_format} template; "
            f"run `cd {result.modelfile.parent} && ollama create NAME -f Modelfile`"
        )
    typer.echo(f"report: {result.report}")
