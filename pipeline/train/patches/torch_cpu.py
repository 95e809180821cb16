"""Ask torch's private CPU feature probes whether this CPU multiplies bf16 natively."""

from __future__ import annotations

from pipeline.train.patches.registry import turned_off

LIBRARY = "torch"
# Private but stable probes (torch.cpu, since 2.3): AVX512-BF16 or AMX tiles mean native bf16 matmuls.
PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def canary() -> str | None:
    """None while torch.cpu still has both probes."""
    import torch

    missing = [name for name in PROBES if not callable(getattr(torch.cpu, name, None))]
    return f"torch.cpu.{', '.join(missing)} gone" if missing else None


def cpu_has_native_bf16() -> bool:
    """True on a CPU with AVX512-BF16 or AMX; False (and a warning) when torch no longer has the probes."""
    import torch

    problem = canary()
    if problem is not None:
        turned_off(
            "native_bf16_probe", LIBRARY, problem, "`native` dtype and precision mean fp32 on this CPU"
        )
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in PROBES)
