"""Load tokenizers and base models: dtype, 4/8-bit bitsandbytes, attention kernel, safetensors only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.assets import resolve_model
from pipeline.errors import AssetError, RecipeError
from pipeline.recipe import ModelSpec

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def resolve_dtype(name: str) -> torch.dtype:
    """Map a recipe dtype name to a torch dtype; auto = bf16 on a capable GPU, else fp32."""
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _warn_remote_code(spec: ModelSpec) -> None:
    if spec.trust_remote_code:
        log.warning("trust_remote_code is on: code from '%s' will run on this machine.", spec.name)


def load_tokenizer(spec: ModelSpec, folder: Path | None = None) -> PreTrainedTokenizerBase:
    """Load the tokenizer of the base model, with the recipe's chat template if it names one."""
    from transformers import AutoTokenizer

    folder = folder or resolve_model(spec.name, spec.revision)
    _warn_remote_code(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AssetError(f"{spec.name}: cannot load the tokenizer ({str(exc).splitlines()[0]}).") from None
    if spec.chat_template:
        template = Path(spec.chat_template)
        if not template.is_file():
            raise RecipeError(f"model.chat_template: file '{template}' not found; see recipes/templates/.")
        tokenizer.chat_template = template.read_text(encoding="utf-8")
    if tokenizer.pad_token_id is None:
        # Labels are built from masks, never from pad ids, so reusing EOS as pad cannot mask EOS out of the loss.
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise AssetError(f"{spec.name}: the tokenizer has no chat template; set model.chat_template to a file.")
    return tokenizer


def quantization_config(spec: ModelSpec, dtype: torch.dtype) -> Any:
    """bitsandbytes settings for 4-bit (QLoRA) or 8-bit loading, or None."""
    if spec.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if spec.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=spec.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=spec.double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )


def load_base_model(spec: ModelSpec, folder: Path | None = None, device_map: Any = None) -> PreTrainedModel:
    """Load the base causal LM from safetensors in the recipe's dtype and quantization."""
    from transformers import AutoModelForCausalLM

    folder = folder or resolve_model(spec.name, spec.revision)
    dtype = resolve_dtype(spec.dtype)
    _warn_remote_code(spec)
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.attn_implementation:
        kwargs["attn_implementation"] = spec.attn_implementation
    quant = quantization_config(spec, dtype)
    if quant is not None:
        kwargs["quantization_config"] = quant
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise AssetError(f"{spec.name}: cannot load the model ({str(exc).splitlines()[0]}).") from None
    # Adapters record this as base_model_name_or_path: keep the portable Hub id, not a cache folder.
    model.name_or_path = spec.name
    model.config._name_or_path = spec.name
    return model
