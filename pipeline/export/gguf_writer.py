"""Write a transformers causal LM and its tokenizer as one GGUF file with the `gguf` package's writer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError, RecipeError
from pipeline.export.gguf_vocab import add_vocabulary, read_vocabulary

if TYPE_CHECKING:
    import numpy as np
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# model_type -> gguf-py's architecture name; llama.cpp rotates q/k of "llama" in its own (interleaved) layout.
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}
PERMUTED_QK = {"llama"}
GGUF_DTYPES = ("f16", "bf16", "q8_0", "f32")
Q8_0_BLOCK = 32  # values per Q8_0 block: a row must be a whole number of blocks


@dataclass
class WrittenGguf:
    """What went into a GGUF file."""

    path: Path
    architecture: str
    dtype: str
    tensors: int
    tensor_types: dict[str, int]  # ggml type name -> how many tensors
    bytes: int


def check_supported(config: Any, where: str) -> str:
    """The GGUF architecture of a model config, or a one-line error naming the supported ones."""
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise AssetError(
            f"{where}: architecture '{model_type}' cannot be exported to GGUF yet; "
            f"supported: {', '.join(sorted(ARCHITECTURES))} (Llama family incl. SmolLM2, Qwen2)."
        )
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise AssetError(
            f"{where}: rope scaling '{rope.get('rope_type') or rope.get('type')}' is not written by this "
            "exporter; only models with default RoPE export to GGUF."
        )
    if model_type == "llama" and (
        getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False)
    ):
        raise AssetError(f"{where}: a Llama with attention or MLP biases cannot be exported to GGUF yet.")
    return ARCHITECTURES[model_type]


def check_dtype(dtype: str) -> str:
    """The GGUF dtype name, or a one-line error naming the choices."""
    if dtype not in GGUF_DTYPES:
        raise RecipeError(f"--dtype {dtype}: not one of {', '.join(GGUF_DTYPES)}.")
    return dtype


def _rope_theta(config: Any) -> float:
    rope = getattr(config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _permute_for_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from transformers' half-split RoPE pairs to llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _add_hyperparameters(writer: Any, config: Any, name: str, file_type: int) -> None:
    import gguf

    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(_head_dim(config))
    if _head_dim(config) != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(_head_dim(config))
        writer.add_value_length(_head_dim(config))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _encode(data: np.ndarray, dtype: str) -> tuple[np.ndarray, Any]:
    """(array, raw ggml type or None) for one tensor: 1-D tensors (norms, biases) stay float32."""
    import gguf
    import numpy as np

    types = gguf.GGMLQuantizationType
    if data.ndim < 2 or dtype == "f32":
        return data.astype(np.float32), None
    if dtype == "f16" or (dtype == "q8_0" and data.shape[-1] % Q8_0_BLOCK):
        return data.astype(np.float16), None
    qtype = types.BF16 if dtype == "bf16" else types.Q8_0
    return gguf.quants.quantize(data.astype(np.float32), qtype), qtype


def _file_type(dtype: str) -> int:
    import gguf

    kinds = gguf.LlamaFileType
    return {
        "f32": kinds.ALL_F32,
        "f16": kinds.MOSTLY_F16,
        "bf16": kinds.MOSTLY_BF16,
        "q8_0": kinds.MOSTLY_Q8_0,
    }[dtype]


def _tensors(model: PreTrainedModel, arch_name: str) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array in transformers' layout, q/k rows permuted where llama.cpp wants them)."""
    import gguf

    config = model.config
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise AssetError(f"{hf_name}: no GGUF tensor name for it in gguf-py's {arch_name} map.")
        data = tensor.detach().float().cpu().numpy()
        if arch_name in PERMUTED_QK and name.endswith("attn_q.weight"):
            data = _permute_for_rope(data, heads)
        elif arch_name in PERMUTED_QK and name.endswith("attn_k.weight"):
            data = _permute_for_rope(data, kv_heads)
        yield name, data


def write_gguf(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, dtype: str, name: str
) -> WrittenGguf:
    """Write model + tokenizer (vocabulary, merges, special ids, chat template) to path as GGUF in dtype."""
    import gguf
    from rich.progress import Progress

    arch_name = check_supported(model.config, name)
    vocab = read_vocabulary(tokenizer, int(model.config.vocab_size), name)
    writer = gguf.GGUFWriter(str(path), arch_name)
    _add_hyperparameters(writer, model.config, name, _file_type(check_dtype(dtype)))
    add_vocabulary(writer, vocab)
    counts: dict[str, int] = {}
    with Progress(transient=True) as progress:
        task = progress.add_task(f"GGUF {dtype}", total=len(model.state_dict()))
        for tensor_name, data in _tensors(model, arch_name):
            encoded, raw_type = _encode(data, dtype)
            writer.add_tensor(tensor_name, encoded, raw_dtype=raw_type)
            kind = (
                raw_type.name if raw_type is not None else ("F16" if encoded.dtype.itemsize == 2 else "F32")
            )
            counts[kind] = counts.get(kind, 0) + 1
            progress.advance(task)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return WrittenGguf(
        path=path,
        architecture=arch_name,
        dtype=dtype,
        tensors=sum(counts.values()),
        tensor_types=counts,
        bytes=path.stat().st_size,
    )
