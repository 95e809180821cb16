"""What bf16 means on this machine: the dtype a recipe's `model.dtype` and `train.precision` resolve to."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def bf16_gpu() -> bool:
    """True on a CUDA GPU that supports bf16 (what `auto` dtype and precision mean by bf16)."""
    import torch

    return torch.cuda.is_available() and bool(torch.cuda.is_bf16_supported())


def bf16_is_native() -> bool:
    """True where bf16 matrix products run natively (what `native` means): a bf16 GPU, or a CPU with
    AVX512-BF16 or AMX."""
    import torch

    if torch.cuda.is_available():
        return bf16_gpu()
    from pipeline.train.patches.torch_cpu import cpu_has_native_bf16

    return cpu_has_native_bf16()


def resolve_dtype(name: str) -> torch.dtype:
    """Map a recipe dtype name to a torch dtype: auto = bf16 on a bf16 GPU (bf16_gpu), native = bf16 wherever
    it is native (bf16_is_native), else fp32."""
    import torch

    if name in ("auto", "native"):
        return torch.bfloat16 if (bf16_gpu() if name == "auto" else bf16_is_native()) else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolved_precision(precision: str, quantization: str) -> str:
    """fp32, bf16 or fp16 for this machine from train.precision and model.quantization: auto = bf16 autocast
    on a bf16 GPU, native = bf16 autocast wherever bf16 is native (CPUs with AVX512-BF16/AMX too, as TRL's
    own default does on any CPU); neither for quantized models."""
    if precision in ("auto", "native"):
        capable = bf16_gpu() if precision == "auto" else bf16_is_native()
        return "bf16" if capable and quantization == "none" else "fp32"
    return precision
