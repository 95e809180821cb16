"""Base-model metrics cached on disk: a second finetune of the same base on the same eval set reuses them.

An entry is <pipeline cache>/base-metrics/<key>.json (PIPELINE_BASE_CACHE names another folder, or 0 turns
the cache off). The key hashes everything the base metrics depend on: the base weights (the manifest's
SHA-256 of the weight files, else their names, sizes and modification times), how they were loaded (the
model section, the dtype and device they ended up on), the tokenizer and the chat template actually used,
the tokenized eval set itself (hence the eval records, data.system_prompt, train.max_length and
train.loss_on), data.system_prompt (given to the safety prompts), every eval setting that changes a metric,
and the versions of this package, torch and transformers. Entries are written atomically; an unreadable or
mismatched entry is ignored and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from pipeline import __version__
from pipeline.config.schema import ModelSpec, Recipe
from pipeline.data.cache import tokenizer_fingerprint
from pipeline.evaluation.runner import EvalSet, evaluate_model
from pipeline.files import write_text
from pipeline.models.assets import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
console = Console(stderr=True)
ENV = "PIPELINE_BASE_CACHE"
OFF = ("0", "false", "no", "off")
# Bump when evaluate_model's metrics change for the same inputs.
FORMAT = 2  # 2: perplexity from packed rows (exactly the one-example values)
# eval settings that judge or show the metrics but never change them.
NOT_METRICS = frozenset(
    {
        "enabled",
        "base",
        "samples",
        "fail_if_worse",
        "perplexity_tolerance",
        "similarity_tolerance",
        "safety_tolerance",
        "preference_tolerance",
        "gate",
        "judge",
    }
)
WEIGHT_PATTERNS = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.gguf")


def cache_folder() -> Path | None:
    """Folder of the cached base metrics: $PIPELINE_BASE_CACHE, else <pipeline cache>/base-metrics; None if off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    return Path(value).expanduser() if value else cache_dir() / "base-metrics"


def weight_files_fingerprint(spec: ModelSpec) -> str:
    """A cheap hash of the base model's weight files: names, sizes and modification times (no reading)."""
    from pipeline.models.assets import resolve_model

    folder = resolve_model(spec.name, spec.revision)
    files = sorted({p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return _hash({"folder": str(folder.resolve()), "files": stats})


def eval_set_fingerprint(data: EvalSet) -> str:
    """A hash of exactly what the model is shown: token ids, loss masks, windows, prompts and references."""
    pairs = {"pairs": data.pairs} if data.pairs else {}  # SFT eval sets keep the key they had
    pairs.update({"completions": data.completions} if data.completions else {})
    return _hash(
        {
            **pairs,
            "rows": data.rows,
            "prompts": data.prompts,
            "references": data.references,
            "window": data.window,
            "stride": data.stride,
            "row_records": data.row_records,
            "prompt_records": data.prompt_records,
        }
    )


def outside_fingerprint() -> str:
    """SHA-256 of the shipped task and text files and the lm-eval version (eval.benchmarks, eval.general_text)."""
    from importlib.metadata import version

    from pipeline.evaluation.benchmarks import TASKS_DIR

    digest = hashlib.sha256(version("lm-eval").encode())
    for path in sorted(TASKS_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def key_parts(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, data: EvalSet, weights: str
) -> dict[str, Any]:
    """Everything the base metrics depend on (weights: a fingerprint of the base weight files)."""
    import torch
    import transformers

    parameter = next(model.parameters())
    return {
        "format": FORMAT,
        "versions": {
            "pipeline": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "weights": weights,
        "model": recipe.model.model_dump(mode="json"),
        "loaded": {"dtype": str(parameter.dtype), "device": parameter.device.type},
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "chat_template": hashlib.sha256(str(tokenizer.chat_template).encode()).hexdigest(),
        "system_prompt": recipe.data.system_prompt,
        "eval": {k: v for k, v in recipe.eval.model_dump(mode="json").items() if k not in NOT_METRICS},
        "train": {"max_length": recipe.train.max_length, "loss_on": recipe.train.loss_on},
        "eval_set": eval_set_fingerprint(data),
        **({"teacher": data.teacher_key} if data.teacher is not None else {}),
        # the shipped benchmark and general-text files, and lm-eval's version, when the eval reads them
        **({"outside": outside_fingerprint()} if recipe.eval.benchmarks or recipe.eval.general_text else {}),
        # data.rewards is set for the sampling stages only (GRPO, RLOO), whose section holds the rewards
        **(
            {"rewards": recipe.stage_settings.model_dump(mode="json")}
            if data.rewards and recipe.stage_settings
            else {}
        ),
    }


def cache_key(parts: dict[str, Any]) -> str:
    """The entry name for these key parts."""
    return _hash(parts)[:32]


def load_entry(folder: Path, key: str) -> dict[str, Any] | None:
    """The cached entry for key, or None when there is none or it is damaged (then it is recomputed)."""
    path = folder / f"{key}.json"
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        valid = (
            entry["key"] == key and isinstance(entry["metrics"], dict) and "perplexity" in entry["metrics"]
        )
        if valid and isinstance(entry["computed"], str):
            return entry
        log.warning("Ignoring the base-metrics cache entry %s: it does not match its key.", path)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        log.warning("Ignoring a damaged base-metrics cache entry %s (%s); recomputing.", path, exc)
    return None


def store_entry(folder: Path, key: str, parts: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Write an entry atomically; returns its computed time (UTC, ISO 8601). A failed write only warns."""
    computed = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        # NaN stays NaN (it marks an example without scored tokens), unlike write_json's null.
        text = json.dumps({"key": key, "computed": computed, "parts": parts, "metrics": metrics})
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / f"{key}.json", text)
    except (OSError, TypeError, ValueError) as exc:
        log.warning("Could not write the base-metrics cache %s (%s); continuing without it.", folder, exc)
    return computed


def evaluate_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    recipe: Recipe,
    data: EvalSet,
    weights: str | None = None,
) -> dict[str, Any]:
    """{'base': metrics, 'base_cache': {key, computed, reused}}: the cached base metrics when an entry matches,
    else evaluate_model's, stored for the next run. weights: the manifest's SHA-256 of the base weights."""
    from pipeline.models.heads import is_reward_model

    # A reward model's base is a new, randomly initialised score head: nothing to reuse between runs.
    folder = None if is_reward_model(model) else cache_folder()
    if folder is None:
        console.print("Evaluating the base model ...")
        return {"base": evaluate_model(model, tokenizer, recipe.eval, data, recipe.data.system_prompt)}
    parts = key_parts(model, tokenizer, recipe, data, weights or weight_files_fingerprint(recipe.model))
    key = cache_key(parts)
    entry = load_entry(folder, key)
    if entry is not None:
        console.print(f"base metrics reused from cache {key} (computed {entry['computed']})")
        return {
            "base": entry["metrics"],
            "base_cache": {"key": key, "computed": entry["computed"], "reused": True},
        }
    console.print("Evaluating the base model ...")
    metrics = evaluate_model(model, tokenizer, recipe.eval, data, recipe.data.system_prompt)
    computed = store_entry(folder, key, parts, metrics)
    return {"base": metrics, "base_cache": {"key": key, "computed": computed, "reused": False}}


def _hash(data: Any) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()
