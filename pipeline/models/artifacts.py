"""Load what a command points at: a run folder, an adapter (folder or Hub id), a merged or base model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pipeline.config.schema import ModelSpec
from pipeline.errors import AssetError
from pipeline.models.assets import resolve_model
from pipeline.runs.record import load_run

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TargetKind = Literal["run", "adapter", "model"]


@dataclass(frozen=True)
class TargetRef:
    """Where a target's pieces are: the base model spec and, for adapters, the adapter folder."""

    kind: TargetKind
    base: ModelSpec
    adapter_dir: Path | None
    run_dir: Path | None
    tokenizer_dir: Path


@dataclass
class LoadedTarget:
    """A model ready for inference with its tokenizer (chat template included)."""

    ref: TargetRef
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def _adapter_base(adapter_dir: Path, fallback: ModelSpec | None) -> ModelSpec:
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if fallback is not None:
        return fallback
    name = config.get("base_model_name_or_path")
    if not name:
        raise AssetError(
            f"{adapter_dir}/adapter_config.json names no base_model_name_or_path; pass the base model."
        )
    return ModelSpec(name=name, revision=config.get("revision"))


def _run_model_spec(run_dir: Path) -> ModelSpec | None:
    run = load_run(run_dir)
    return run.model_spec() if run is not None else None


def split_revision(target: str, revision: str | None = None) -> tuple[str, str | None]:
    """'ORG/NAME@REV' -> ('ORG/NAME', 'REV') so every command can pin a Hub revision; paths pass unchanged."""
    name, at, pinned = target.rpartition("@")
    hub_like = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not at or not hub_like or not pinned or Path(target).expanduser().exists():
        return target, revision
    if revision is not None and revision != pinned:
        raise AssetError(f"{target}: two revisions given ('{pinned}' and '{revision}'); keep one.")
    return name, pinned


def resolve_target(target: str, revision: str | None = None) -> TargetRef:
    """Classify a target (path, Hub id, or Hub id@revision) and find its base, adapter and tokenizer folders."""
    target, revision = split_revision(target, revision)
    path = Path(target).expanduser()
    if path.is_dir() and (path / "adapter").is_dir():
        spec = _run_model_spec(path)
        adapter = path / "adapter"
        if (adapter / "adapter_config.json").is_file():
            return TargetRef("run", _adapter_base(adapter, spec), adapter, path, adapter)
        return TargetRef("run", ModelSpec(name=str(adapter)), None, path, adapter)  # full fine-tuning run
    folder = path if path.is_dir() else resolve_model(target, revision)
    if (folder / "adapter_config.json").is_file():
        tokenizer_dir = folder if (folder / "tokenizer_config.json").is_file() else None
        base = _adapter_base(folder, None)
        return TargetRef(
            "adapter", base, folder, None, tokenizer_dir or resolve_model(base.name, base.revision)
        )
    if (folder / "config.json").is_file():
        return TargetRef("model", ModelSpec(name=str(folder)), None, None, folder)
    raise AssetError(
        f"{target}: neither a run folder, an adapter nor a model (no adapter_config.json or config.json)."
    )


def load_target(target: str, revision: str | None = None, dtype: str | None = None) -> LoadedTarget:
    """Load a target for inference: base model (+ adapter via peft) and the tokenizer it was trained with."""
    from pipeline.models.loading import load_base_model, load_tokenizer, resize_embeddings

    ref = resolve_target(target, revision)
    base = ref.base if dtype is None else ref.base.model_copy(update={"dtype": dtype})
    tokenizer = load_tokenizer(base, folder=ref.tokenizer_dir)
    model = load_base_model(base)
    if ref.adapter_dir is not None:
        from pipeline.models.heads import attach_adapter

        resize_embeddings(model, len(tokenizer))  # a bare adapter folder with added tokens names no recipe
        model = attach_adapter(model, ref.adapter_dir)
    model.eval()
    return LoadedTarget(ref=ref, model=model, tokenizer=tokenizer)
