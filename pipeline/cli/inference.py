"""Inference commands: `generate`, `chat` and `serve`."""

from __future__ import annotations

import sys

import typer

from pipeline.cli import options as gen


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

    from pipeline.inference.prompts import gather_prompts, run_generate

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
    from pipeline.inference.chat import run_chat
    from pipeline.inference.loading import load_for_inference

    settings = gen.sampling(
        greedy, temperature, top_p, top_k, min_p, repetition_penalty, max_new_tokens, seed, stop
    )
    loaded = load_for_inference(target, dtype, device, merge=True)
    helper = load_for_inference(assistant, dtype, device, merge=True).model if assistant else None
    run_chat(
        loaded.model,
        loaded.tokenizer,
        settings,
        system=system,
        context_length=context_length,
        assistant_model=helper,
        stats=stats,
    )


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
    max_batch: int = typer.Option(8, min=1, help="Waiting requests decoded together; 1 = one at a time."),
    engine: str = typer.Option("pipeline", help="pipeline (this server) or vllm (from `make vllm-env`)."),
    vllm_args: str = typer.Option("", help="More vLLM flags with --engine vllm, e.g. '--enforce-eager'."),
) -> None:
    """OpenAI-compatible API (/v1/models, /v1/chat/completions, /v1/completions) over a run and adapters."""
    from pipeline.errors import PipelineError

    if engine == "vllm":
        from pipeline.inference.vllm_server import serve_vllm

        if assistant:
            raise PipelineError("--assistant works with --engine pipeline only; drop it for vLLM.")
        serve_vllm(target, adapter or [], name, host, port, api_key, context_length, dtype, vllm_args)
        return
    if engine != "pipeline":
        raise PipelineError(f"--engine {engine}: use pipeline or vllm.")
    from pipeline.inference.server import serve_target

    serve_target(
        target,
        adapter or [],
        name,
        host,
        port,
        api_key,
        max_tokens,
        context_length,
        assistant,
        dtype,
        device,
        max_batch,
    )
