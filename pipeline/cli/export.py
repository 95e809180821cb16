"""`pipeline export`: a verified GGUF for llama.cpp, a GGUF + Modelfile for Ollama, or a LoRA GGUF."""

from __future__ import annotations

import typer

from pipeline.cli.options import Target


def export(
    run: Target,
    fmt: str = typer.Option(
        "gguf",
        "--format",
        "-f",
        help="gguf (one file), ollama (GGUF + Modelfile) or gguf-lora (base GGUF + the adapter alone as a "
        "llama.cpp LoRA GGUF + a Modelfile with ADAPTER).",
    ),
    dtype: str = typer.Option(
        "f16",
        help="GGUF weights: f16, bf16, q8_0 (8-bit blocks), f32, or llama.cpp's q6_k, q5_k_m, q4_k_m, q4_0 "
        "(quantized by llama.cpp itself: `make llamacpp-env`).",
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="GGUF file (gguf) or folder (ollama, gguf-lora); default RUN/export/<name>-<dtype>[-ollama|-lora].",
    ),
    imatrix: bool = typer.Option(
        True, help="k-quants: weigh the rounding by an importance matrix measured on the run's training data."
    ),
) -> None:
    """Merge the adapter, write a GGUF (tokenizer and chat template inside), check it with llama.cpp (when
    `make llamacpp-env` built it) and transformers' reader."""
    from pathlib import Path

    from pipeline.export.command import export_run

    result = export_run(run, fmt, dtype, Path(output) if output else None, imatrix=imatrix)
    shown = result.adapter or result.gguf
    line = f"{shown}: {result.dtype}, {result.bytes / 2**20:.1f} MiB"
    check = result.check
    if check is not None:
        line += (
            f"; read back by transformers: max |logit diff| {check.max_abs_diff:.2e} (relative "
            f"{check.relative_diff:.1e} <= {check.relative_tolerance:.0e}), same next token at "
            f"{check.top1_agreement:.0%} of positions, same token ids on {check.sample_tokens} sample tokens, "
            "chat template kept"
        )
    typer.echo(f"{line}; {result.seconds:.1f} s")
    if result.engine is not None:
        typer.echo(
            result.engine.summary() + ("" if result.adapter is None else f", applied on {result.gguf.name}")
        )
    if result.modelfile is not None:
        typer.echo(
            f"{result.modelfile}: {result.chat_format} template; "
            f"run `cd {result.modelfile.parent} && ollama create NAME -f Modelfile`"
        )
    typer.echo(f"report: {result.report}")
