"""k-quants and Q4_0 through llama.cpp's own quantizer, with an importance matrix from the run's training data.

The importance matrix is what llama.cpp's imatrix tool measures (the mean squared input activation of every
column of every matrix multiplication), computed here with forward hooks on the merged model in transformers
and handed to llama_model_quantize by tensor name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.export.llamacpp import call

if TYPE_CHECKING:
    from transformers import PreTrainedModel

KQUANTS = ("q4_k_m", "q5_k_m", "q6_k", "q4_0")
IMATRIX_RECORDS = 64  # training records run through the model: ~10k tokens, seconds for a 135M model on CPU


def gguf_names(model: PreTrainedModel, arch_name: str) -> dict[str, str]:
    """transformers Linear module name -> the GGUF tensor its weight becomes (lm_head: token_embd when tied)."""
    import gguf
    import torch

    arch = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name)
    names = gguf.get_tensor_name_map(arch, model.config.num_hidden_layers)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    found = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        name = names.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
        if name == "output.weight" and tied:
            name = "token_embd.weight"
        if name is not None:
            found[module_name] = name
    return found


def importance_matrix(
    model: PreTrainedModel, sequences: list[list[int]], arch_name: str
) -> dict[str, list[float]]:
    """GGUF tensor name -> mean of x**2 per input column over every token of sequences."""
    import torch

    sums: dict[str, torch.Tensor] = {}
    counts: Counter[str] = Counter()
    modules = dict(model.named_modules())
    hooks = []

    def hook_for(name: str) -> Any:
        def accumulate(_module: Any, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            x = inputs[0].detach().double().reshape(-1, inputs[0].shape[-1])
            sums[name] = sums.get(name, torch.zeros(x.shape[-1], dtype=torch.float64)) + (x * x).sum(0)
            counts[name] += x.shape[0]

        return accumulate

    for module_name, tensor_name in gguf_names(model, arch_name).items():
        hooks.append(modules[module_name].register_forward_hook(hook_for(tensor_name)))
    try:
        with torch.inference_mode():
            for ids in sequences:
                model(torch.tensor([ids]))
    finally:
        for handle in hooks:
            handle.remove()
    return {name: (total / counts[name]).float().tolist() for name, total in sums.items()}


def quantize(
    env: Path, source: Path, output: Path, dtype: str, imatrix: dict[str, list[float]] | None
) -> float:
    """llama.cpp quantizes source (an f16 GGUF) into output as dtype; the seconds it took."""
    answer = call(
        env,
        {"op": "quantize", "source": str(source), "output": str(output), "type": dtype, "imatrix": imatrix},
        output,
    )
    return float(answer["seconds"])


def tensor_types(path: Path) -> dict[str, int]:
    """ggml type name -> how many tensors of the file have it."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return dict(Counter(t.tensor_type.name for t in reader.tensors))
