"""manifest.json: everything needed to tell what a run was and to run it again."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.loader import validate_recipe_dict
from pipeline.config.schema import DataSpec, ModelSpec, Recipe
from pipeline.errors import RecipeError
from pipeline.files import write_json
from pipeline.models.parent import parent_info, parent_of
from pipeline.ranks import world_size
from pipeline.runs.manifest import MANIFEST, Manifest

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from pipeline.data.splits import Splits

PACKAGES = (
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "bitsandbytes",
    "sentence-transformers",
    "pydantic",
    "pipeline",
)
MODEL_FILES = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json")
# Values that look like credentials (Hugging Face, OpenAI-style and generic bearer tokens).
TOKEN_PATTERN = re.compile(r"(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{16,}|api_[A-Za-z0-9]{16,})")
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SECRET_ENV = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|ACCESS_KEY", re.IGNORECASE)


def now() -> str:
    """UTC time in ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256_text(text: str) -> str:
    """Hex SHA-256 of a string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def canonical_hash(data: Any) -> str:
    """SHA-256 of data as sorted-key JSON, so equal content always hashes equal."""
    return sha256_text(json.dumps(data, sort_keys=True, separators=(",", ":")))


def redact(text: str) -> str:
    """Replace credentials (token-like strings and the values of secret environment variables) with ***."""
    for name, value in os.environ.items():
        if SECRET_ENV.search(name) and len(value) >= 6:
            text = text.replace(value, "***")
    return TOKEN_PATTERN.sub("***", text)


def data_files(data: DataSpec) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of every local data file the recipe reads; Hub data sets by id and revision.
    A streamed training file (data.streaming), possibly larger than memory, gets its modification time
    instead of a hash."""
    from pipeline.data.sources import local_files

    entries = []
    for split, sources in (("train", data.train), ("eval", data.eval)):
        for source in sources:
            folder = Path(data.resolve_path(source.path))
            paths = (
                sorted(p for p in folder.rglob("*") if p.is_file())
                if folder.is_dir()
                else local_files(data, source)
            )
            if paths is None:
                entries.append({"split": split, "source": source.path, "revision": source.revision})
                continue
            for path in paths:
                stat = Path(path).stat()
                entry = {"split": split, "source": source.path, "path": str(Path(path).resolve())}
                if data.streaming and split == "train":
                    entry.update(bytes=stat.st_size, mtime_ns=stat.st_mtime_ns, streamed=True)
                else:
                    entry.update(bytes=stat.st_size, sha256=sha256_file(path))
                entries.append(entry)
    return entries


def tokenizer_info(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Hashes of the vocabulary (with special tokens) and of the chat template."""
    vocab = sorted(tokenizer.get_vocab().items())
    specials = {k: str(v) for k, v in tokenizer.special_tokens_map.items()}
    template = (
        tokenizer.chat_template
        if isinstance(tokenizer.chat_template, str)
        else json.dumps(tokenizer.chat_template, sort_keys=True)
    )
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "sha256": canonical_hash([vocab, specials]),
        "chat_template_sha256": sha256_text(template or ""),
    }


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """The base model's id, revision, local folder and SHA-256 of its config and weight files."""
    from pipeline.models.assets import resolve_model

    folder = resolve_model(spec.name, spec.revision)
    files = sorted({p for pattern in MODEL_FILES for p in Path(folder).glob(pattern) if p.is_file()})
    hashes = {p.name: sha256_file(p) for p in files}
    # A Hub cache snapshot's folder name is the commit the files came from.
    commit = folder.name if folder.parent.name == "snapshots" else None
    return {
        "name": spec.name,
        "revision": spec.revision,
        "commit": commit,
        "folder": str(folder),
        "files_sha256": hashes,
        "sha256": canonical_hash(hashes),
    }


def environment() -> dict[str, Any]:
    """Python, torch, CUDA, device, world size and the versions of the libraries that shape training."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})",
        "device_count": torch.cuda.device_count() if cuda else 1,
        "world_size": world_size(),
        "platform": platform.platform(),
        "packages": versions,
    }


def git_commit(folder: Path | None = None) -> dict[str, Any] | None:
    """The git commit of the project checkout (and whether it had uncommitted changes), or None."""
    folder = folder or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def check_no_secrets(recipe: Recipe) -> None:
    """Refuse a recipe with a token-like value or a secret environment variable's value in any field."""
    for key, value in _flatten(recipe.to_dict()).items():
        if isinstance(value, str) and redact(value) != value:
            raise RecipeError(
                f"{recipe.path or recipe.name}: {key} holds what looks like a secret (a token); keep "
                "secrets in the environment (HF_TOKEN), never in recipes or overrides."
            )


def build_manifest(recipe: Recipe, splits: Splits, tokenizer: PreTrainedTokenizerBase) -> Manifest:
    """The manifest of a run about to train: configuration, inputs, environment and command."""
    check_no_secrets(recipe)
    resolved = recipe.to_dict()
    return Manifest.model_validate(
        {
            "recipe_name": recipe.name,
            "recipe_path": str(recipe.path.resolve()) if recipe.path else None,
            "recipe": resolved,
            "recipe_sha256": canonical_hash(resolved),
            "data": {
                "files": data_files(recipe.data),
                "records": {
                    "train": "streamed" if recipe.data.streaming else len(splits.train),
                    "eval": len(splits.eval),
                },
                "skipped": dict(splits.skipped),
            },
            "tokenizer": tokenizer_info(tokenizer),
            "model": model_info(recipe.model),
            "parent": parent_info(parent_of(recipe)),
            "environment": environment(),
            "seeds": {"train": recipe.train.seed, "data": recipe.data.seed},
            "command": [redact(arg) for arg in sys.argv],
            "cwd": os.getcwd(),
            "git": git_commit(),
            "times": {"started": now(), "finished": None, "seconds": {}},
            "resumed": [],
        }
    )


def write_manifest(run_dir: Path, manifest: Manifest) -> Path:
    """Write run_dir/manifest.json atomically (secrets redacted) and return its path."""
    path = Path(run_dir) / MANIFEST
    write_json(path, json.loads(redact(json.dumps(manifest.to_json()))))
    return path


def finish_manifest(
    run_dir: Path, manifest: Manifest, seconds: dict[str, float], levers: dict[str, str] | None = None
) -> Path:
    """Stamp the finish time, per-phase wall times (seconds) and the speed levers the run had on ("on" or
    "off: why", from pipeline.train.patches.registry) into the manifest and write it."""
    if levers is not None:
        manifest.speed_levers = levers
    manifest.times.finished = now()
    manifest.times.seconds = {name: round(value, 3) for name, value in seconds.items()}
    return write_manifest(run_dir, manifest)


def read_manifest(path: Path) -> Manifest:
    """Read a manifest.json (or the one inside a run folder), with one-line errors."""
    return Manifest.read(path)


def recipe_from_manifest(path: Path) -> tuple[Recipe, Manifest]:
    """The exact recipe a manifest recorded (relative paths resolve from the original recipe file)."""
    manifest = read_manifest(path)
    recipe_path = Path(manifest.recipe_path) if manifest.recipe_path else None
    name = manifest.recipe_name
    if not SAFE_NAME.match(name):
        raise RecipeError(
            f"{path}: recipe_name '{name}' would write outside the runs folder; use a plain name."
        )
    recipe = validate_recipe_dict(manifest.recipe, source=f"{path}: recipe", name=name, path=recipe_path)
    return recipe, manifest


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): data}


# Recipe sections that do not change what training computes, so they may differ on resume.
NOT_TRAINING = ("description", "eval.", "hub.")


def summarize(changes: list[str], shown: int = 6) -> str:
    """The first few differences joined into one short clause."""
    more = f"; and {len(changes) - shown} more" if len(changes) > shown else ""
    return "; ".join(changes[:shown]) + more


def differences(previous: Manifest, current: Manifest) -> list[str]:
    """What changed between two manifests that shapes training: recipe, data, tokenizer, model, world size."""
    found = []
    old, new = _flatten(previous.recipe), _flatten(current.recipe)
    for key in sorted(set(old) | set(new)):
        if not key.startswith(NOT_TRAINING) and old.get(key) != new.get(key):
            found.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    old_files = {f.path or f.source: f.stamp() for f in previous.data.files}
    new_files = {f.path or f.source: f.stamp() for f in current.data.files}
    for path in sorted(set(old_files) | set(new_files)):
        if path not in new_files:
            found.append(f"data file {path} is no longer used")
        elif path not in old_files:
            found.append(f"data file {path} is new")
        elif old_files[path] != new_files[path]:
            how = "sha256" if isinstance(new_files[path], str) else "size or modification time"
            found.append(f"data file {path} changed ({how})")
    if previous.tokenizer.sha256 != current.tokenizer.sha256:
        found.append("tokenizer changed (sha256)")
    if previous.model.sha256 != current.model.sha256:
        found.append("model weights changed (sha256)")
    if previous.tokenizer.chat_template_sha256 != current.tokenizer.chat_template_sha256:
        found.append("chat template changed")
    old_world, new_world = previous.environment.world_size, current.environment.world_size
    if old_world != new_world:
        found.append(f"world size: {old_world} -> {new_world}")
    return found
