"""A PEFT LoRA adapter alone as a llama.cpp LoRA GGUF (general.type "adapter", adapter.type "lora").

llama.cpp's conventions (its convert_lora_to_gguf.py and llama-adapter.cpp): one <base tensor>.lora_a (r x in)
and .lora_b (out x r) per adapted matrix, named as in the base GGUF; one adapter.lora.alpha, applied as
alpha / r of each pair. q/k rows are permuted like the base's (only B has output rows). PEFT's per-module
scalings (rsLoRA, alpha_pattern, rank_pattern) are folded into B where they differ from that one alpha."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import AssetError
from pipeline.export.gguf_writer import PERMUTED_QK, WrittenGguf, _permute_for_rope, check_supported

if TYPE_CHECKING:
    import numpy as np

LORA_DTYPES = (
    "f32",
    "f16",
)  # adapter tensors: f32 for --dtype f32, else f16 (convert_lora_to_gguf's default)
PEFT_PREFIX = "base_model.model."
PAIR = re.compile(r"^(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")


def adapter_problems(config: dict[str, Any]) -> list[str]:
    """What in an adapter_config.json llama.cpp's LoRA cannot carry (empty: exportable)."""
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type {config.get('peft_type')} (only LORA)")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora)")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']}")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("trained biases")
    if config.get("trainable_token_indices"):
        problems.append("trained token rows (trainable_token_indices)")
    return problems


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern/alpha_pattern lookup: a key matches the module name or its dotted tail."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _scaling(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's scaling of one module: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"]))
    return alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)


def read_pairs(adapter_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """transformers module name -> {"A": r x in, "B": out x r} float32 arrays from adapter_model.safetensors."""
    from safetensors.numpy import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise AssetError(f"{adapter_dir}: no adapter_model.safetensors to export as a LoRA GGUF.")
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in load_file(str(weights)).items():
        match = PAIR.match(key.removeprefix(PEFT_PREFIX))
        if match is None:
            raise AssetError(
                f"{weights}: tensor {key} is not a LoRA A/B pair; llama.cpp's LoRA GGUF holds only those "
                "(export the merged model instead: --format gguf)."
            )
        pairs.setdefault(match["module"], {})[match["half"]] = value.astype("float32")
    return pairs


def lora_tensors(
    adapter_dir: Path, model_config: Any, arch_name: str
) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """(adapter.lora.alpha, [(GGUF name, array)]) for an adapter folder on a base of model_config."""
    import gguf

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    problems = adapter_problems(config)
    if problems:
        raise AssetError(
            f"{adapter_dir}: llama.cpp's LoRA GGUF cannot carry {'; '.join(problems)}; "
            "export the merged model instead (--format gguf)."
        )
    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, model_config.num_hidden_layers)
    heads = int(model_config.num_attention_heads)
    kv_heads = int(getattr(model_config, "num_key_value_heads", None) or heads)
    pairs = read_pairs(adapter_dir)
    # One alpha for the file: the most common effective alpha (scaling x rank); other modules' B absorbs theirs.
    effective = {m: _scaling(config, m, p["A"].shape[0]) * p["A"].shape[0] for m, p in pairs.items()}
    alpha = Counter(round(a, 6) for a in effective.values()).most_common(1)[0][0] if effective else 1.0
    tensors = []
    for module, pair in sorted(pairs.items()):
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None or set(pair) != {"A", "B"}:
            raise AssetError(f"{adapter_dir}: LoRA on {module} has no llama.cpp tensor to apply to.")
        lora_b = pair["B"] * (effective[module] / alpha)
        if arch_name in PERMUTED_QK and name.endswith("attn_q.weight"):
            lora_b = _permute_for_rope(lora_b, heads)
        elif arch_name in PERMUTED_QK and name.endswith("attn_k.weight"):
            lora_b = _permute_for_rope(lora_b, kv_heads)
        tensors += [(f"{name}.lora_a", pair["A"]), (f"{name}.lora_b", lora_b)]
    return float(alpha), tensors


def write_lora_gguf(adapter_dir: Path, model_config: Any, path: Path, dtype: str, name: str) -> WrittenGguf:
    """Write adapter_dir's LoRA as a llama.cpp adapter GGUF at path (tensors in f32 for dtype f32, else f16)."""
    import gguf
    import numpy as np

    arch_name = check_supported(model_config, name)
    alpha, tensors = lora_tensors(adapter_dir, model_config, arch_name)
    storage = np.float32 if dtype == "f32" else np.float16
    writer = gguf.GGUFWriter(str(path), arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(name)
    for tensor_name, data in tensors:
        writer.add_tensor(tensor_name, data.astype(storage))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    kind = "F32" if storage is np.float32 else "F16"
    return WrittenGguf(
        path=path,
        architecture=arch_name,
        dtype=dtype if dtype == "f32" else "f16",
        tensors=len(tensors),
        tensor_types={kind: len(tensors)},
        bytes=path.stat().st_size,
    )
