"""The teacher of a distillation run (distill.teacher): found and checked before any weight loads, then loaded
frozen, with a run's adapter folded into its base.

A teacher is any run folder, adapter folder, merged or plain model folder or model id (resolved offline as
every model reference is: pipeline.models.artifacts), or `latest:RECIPE`, that recipe's newest finished run
under train.output_dir. Its tokenizer must be the student's: the loss compares the two next-token
distributions over one vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config.schema import ModelSpec, Recipe
from pipeline.config.stages import LATEST_RUN, DistillSpec
from pipeline.errors import AssetError, PipelineError, RecipeError
from pipeline.models.artifacts import TargetRef, resolve_target
from pipeline.runs.manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class Teacher:
    """A resolved teacher: as the recipe names it, what it resolved to, and its pieces (base, adapter)."""

    name: str  # distill.teacher as written
    target: str  # the run folder, model folder or model id it resolved to
    ref: TargetRef


def _source(recipe: Recipe) -> str:
    return str(recipe.path or recipe.name)


def newest_run(recipe: Recipe, name: str) -> Path:
    """The newest finished run of recipe `name` under train.output_dir; RecipeError naming the command that
    makes one when there is none."""
    root = Path(recipe.train.output_dir)
    finished: list[tuple[str, Path]] = []
    for folder in root.glob(f"{name}-*") if root.is_dir() else []:
        if not (folder / MANIFEST).is_file():
            continue
        try:
            manifest = Manifest.read(folder)
        except PipelineError:
            continue
        if manifest.recipe_name == name and manifest.times.finished and (folder / "adapter").is_dir():
            finished.append((manifest.times.started, folder))
    if not finished:
        raise RecipeError(
            f"{_source(recipe)}: distill.teacher {LATEST_RUN}{name}: no finished {name} run in {root}/; make one "
            f"with `pipeline finetune {name}` (make finetune RECIPE={name}), or point distill.teacher at a run "
            "folder, a model folder or a model id."
        )
    return max(finished)[1]


def resolve_teacher(recipe: Recipe) -> Teacher:
    """distill.teacher resolved and checked without loading weights: it exists and holds safetensors."""
    name = recipe.settings_of(DistillSpec).teacher
    if name is None:
        raise RecipeError(f"{_source(recipe)}: train.stage distill needs distill.teacher.")
    if name.startswith(LATEST_RUN):
        target = str(newest_run(recipe, name.removeprefix(LATEST_RUN).strip()))
    else:
        beside = recipe.path.parent / name if recipe.path else None
        exists = Path(name).expanduser().exists()
        target = str(beside) if not exists and beside is not None and beside.exists() else name
    try:
        ref = resolve_target(target)
    except AssetError as exc:
        raise RecipeError(f"{_source(recipe)}: distill.teacher '{name}': {exc}") from None
    weights = ref.adapter_dir if ref.adapter_dir is not None else Path(ref.base.name)
    if weights.is_dir() and not any(weights.glob("*.safetensors")):
        raise RecipeError(
            f"{_source(recipe)}: distill.teacher '{name}': {weights} holds no .safetensors weights (only "
            "safetensors are loaded); point it at a finished run or a model saved with safetensors."
        )
    return Teacher(name=name, target=target, ref=ref)


def check_vocabulary(recipe: Recipe, teacher: Teacher) -> None:
    """The teacher's tokenizer and output vocabulary are the student's (tokenizers and config.json only);
    RecipeError in one line otherwise."""
    from transformers import AutoConfig

    from pipeline.models.assets import resolve_model
    from pipeline.models.loading import load_tokenizer

    def output_rows(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> int:
        # Embeddings grow to the tokenizer's length when tokens were added (models.loading.resize_embeddings).
        folder = resolve_model(spec.name, spec.revision)
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=spec.trust_remote_code)
        return max(config.get_text_config().vocab_size, len(tokenizer))

    student = load_tokenizer(recipe.model)
    theirs = load_tokenizer(teacher.ref.base, folder=teacher.ref.tokenizer_dir)
    rows = output_rows(recipe.model, student), output_rows(teacher.ref.base, theirs)
    if student.get_vocab() != theirs.get_vocab() or rows[0] != rows[1]:
        raise RecipeError(
            f"{_source(recipe)}: distill.teacher '{teacher.name}' has another vocabulary ({len(theirs)} tokens, "
            f"{rows[1]} output rows) than the student {recipe.model.name} ({len(student)} tokens, {rows[0]} "
            "rows); distillation compares next-token distributions, so pick a teacher of the same tokenizer "
            "(the same model family)."
        )


def load_teacher(recipe: Recipe, teacher: Teacher) -> PreTrainedModel:
    """The teacher in the student's dtype, evaluation mode and frozen; a run's or adapter folder's LoRA
    weights folded into its base (one plain model: no adapter arithmetic per forward)."""
    from pipeline.models.artifacts import load_target

    model = load_target(teacher.target, dtype=recipe.model.dtype).model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.eval()
    model.requires_grad_(False)
    return model


def fingerprint(teacher: Teacher) -> str:
    """What identifies the teacher's weights without reading them: the resolved folders and their weight
    files' names, sizes and modification times (the base-metrics cache keys the divergence on it)."""
    import hashlib
    import json

    folders = [teacher.ref.adapter_dir, Path(teacher.ref.base.name)]
    files = sorted(p for f in folders if f is not None and f.is_dir() for p in f.glob("*.safetensors"))
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    text = json.dumps({"target": teacher.target, "base": teacher.ref.base.name, "files": stats})
    return hashlib.sha256(text.encode()).hexdigest()


def teacher_parameters(teacher: Teacher) -> int:
    """The teacher's weight count, from its config.json on torch's meta device (no memory; the memory plan)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipeline.models.assets import resolve_model

    base = teacher.ref.base
    config = AutoConfig.from_pretrained(
        str(resolve_model(base.name, base.revision)), trust_remote_code=base.trust_remote_code
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=base.trust_remote_code)
    return sum(p.numel() for p in model.parameters())
