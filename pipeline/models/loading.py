"""Load tokenizers and base models: dtype, 4/8-bit bitsandbytes, attention kernel, safetensors only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.schema import ModelSpec
from pipeline.config.templates import names_hint, template_path
from pipeline.errors import AssetError, RecipeError
from pipeline.models.assets import resolve_model
from pipeline.models.precision import resolve_dtype

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


def _warn_remote_code(spec: ModelSpec) -> None:
    if spec.trust_remote_code:
        log.warning("trust_remote_code is on: code from '%s' will run on this machine.", spec.name)


def _read_template(value: str) -> str:
    """The text of model.chat_template: a shipped template by name, or a Jinja file."""
    try:
        path = template_path(value)
    except ValueError as exc:
        raise RecipeError(f"model.chat_template: {exc}.") from None
    if not path.is_file():
        raise RecipeError(f"model.chat_template: file '{path}' not found; {names_hint()}.")
    return path.read_text(encoding="utf-8")


def load_tokenizer(spec: ModelSpec, folder: Path | None = None) -> PreTrainedTokenizerBase:
    """Load the tokenizer of the base model, with the recipe's chat template if it names one."""
    from transformers import AutoTokenizer

    folder = folder or resolve_model(spec.name, spec.revision)
    _warn_remote_code(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise AssetError(f"{spec.name}: cannot load the tokenizer ({str(exc).splitlines()[0]}).") from None
    # Errors about its template name the recipe's model.name, not a cache folder.
    tokenizer.name_or_path = spec.name
    if spec.chat_template:
        tokenizer.chat_template = _read_template(spec.chat_template)
    if spec.add_special_tokens:
        # Already-present tokens are a no-op, so a tokenizer saved with an adapter can go through here again.
        tokenizer.add_tokens(list(spec.add_special_tokens), special_tokens=True)
    if tokenizer.pad_token_id is None:
        # Labels come from masks, never from pad ids, so reusing EOS as pad cannot mask EOS out of the loss.
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise AssetError(f"{spec.name}: the tokenizer has no chat template (a base model?); {names_hint()}.")
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


def new_token_ids(spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of the recipe's added special tokens (model.add_special_tokens), in recipe order."""
    return [int(i) for i in tokenizer.convert_tokens_to_ids(list(spec.add_special_tokens))]


def resize_embeddings(model: PreTrainedModel, vocab_size: int) -> bool:
    """Grow the input/output embeddings to vocab_size rows if they are smaller; True when resized."""
    if model.get_input_embeddings().weight.shape[0] >= vocab_size:
        return False
    log.info("Resizing the token embeddings to %d rows for the added special tokens.", vocab_size)
    model.resize_token_embeddings(vocab_size)
    return True


def _on_gpu(model: PreTrainedModel) -> bool:
    return any(p.device.type == "cuda" for p in model.parameters())


def default_device_map() -> dict[str, int] | None:
    """This process's GPU ({"": local rank}) so evaluation before training runs there too; None on CPU and
    under FSDP/DeepSpeed, which place (and shard) the weights themselves."""
    import torch

    from pipeline.ranks import local_rank, sharding_requested

    if not torch.cuda.is_available() or sharding_requested():
        return None
    return {"": local_rank()}


def load_base_model(spec: ModelSpec, folder: Path | None = None, device_map: Any = None) -> PreTrainedModel:
    """Load the base causal LM from safetensors in the recipe's dtype and quantization.

    With model.add_special_tokens the embeddings are resized to the tokenizer's new length, so the
    same call gives the base that adapters of such runs load onto. A merged reward model's folder loads as the
    sequence-classification model it is (pipeline.models.heads).
    """
    from pipeline.models.heads import auto_class_for

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
    device_map = device_map if device_map is not None else default_device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = auto_class_for(folder).from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise AssetError(f"{spec.name}: cannot load the model ({str(exc).splitlines()[0]}).") from None
    if spec.quantization == "4bit" and not _on_gpu(model):
        from pipeline.train.patches.bnb_cpu import keep_exact_4bit_path

        keep_exact_4bit_path(model)
    if spec.add_special_tokens:
        resize_embeddings(model, len(load_tokenizer(spec, folder)))
    # Adapters record this as base_model_name_or_path: keep the portable Hub id, not a cache folder.
    model.name_or_path = spec.name
    model.config.name_or_path = spec.name
    return model
