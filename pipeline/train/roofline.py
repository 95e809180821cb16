"""What this machine's matrix units deliver at a model's own GEMM shapes: the roofline a training step is held
against.

A step of a transformer is mostly matrix multiplies of its linear layers (plus attention). On a CPU the
rate of a multiply depends strongly on its shape and dtype (2 cores, bf16, 700x576 by 576x1536: ~800
GFLOP/s, by 576x192: far less), so a single peak figure would flatter or shame a run unfairly. The roofline
here is the rate at which this machine runs exactly the multiplies one step needs (forward, and backward for
the inputs; for the weights too when they train), each timed alone: a step can at best match it. On GPUs
the usual yardstick is the datasheet peak (MFU); it is used when the device is known.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' datasheets, without sparsity.
GPU_PEAKS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is ~756e12 and matches "H100 PCIe" below first
    "H100 PCIe": 756e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "RTX 4090": 165e12,
}
_SECONDS_PER_SHAPE = 0.05  # timing budget per GEMM shape (s): ~1 s for a small model's 7 shapes x 2 passes


@dataclass(frozen=True)
class Gemm:
    """One (M x K) by (K x N) multiply and how many of it a step runs."""

    m: int
    k: int
    n: int
    count: int = 1

    @property
    def flops(self) -> float:
        """Floating-point operations of all `count` multiplies (a multiply-add counts 2)."""
        return 2.0 * self.m * self.k * self.n * self.count


@dataclass(frozen=True)
class Roofline:
    """A rate (FLOP/s) a step is measured against, and where it comes from."""

    flops_per_second: float
    source: str  # "measured GEMMs (bfloat16, 2 threads)" or "datasheet peak (H100)"

    def as_dict(self) -> dict[str, Any]:
        """For metrics.json: GFLOP/s and the source."""
        return {"gflops": round(self.flops_per_second / 1e9, 1), "source": self.source}


def gpu_peak(name: str) -> float | None:
    """The datasheet dense bf16 peak of a GPU named like torch.cuda.get_device_name(), if known."""
    for key in sorted(GPU_PEAKS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return GPU_PEAKS[key]
    return None


def time_gemm(gemm: Gemm, dtype: torch.dtype, device: str) -> float:
    """Seconds one (m x k) @ (k x n) takes here, best of repeated runs within the time budget."""
    import torch

    a = torch.randn(gemm.m, gemm.k, dtype=dtype, device=device)
    b = torch.randn(gemm.k, gemm.n, dtype=dtype, device=device)
    torch.matmul(a, b)  # first call: kernel selection and caches
    best, spent = float("inf"), 0.0
    while spent < _SECONDS_PER_SHAPE or best == float("inf"):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        torch.matmul(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        best, spent = min(best, elapsed), spent + elapsed
    return best


def distinct(gemms: list[Gemm]) -> Counter[Gemm]:
    """Each distinct (m, k, n) shape with how many multiplies of it the list holds (counts summed)."""
    shapes: Counter[Gemm] = Counter()
    for gemm in gemms:
        shapes[Gemm(gemm.m, gemm.k, gemm.n)] += gemm.count
    return shapes


def measure(gemms: list[Gemm], dtype: torch.dtype, device: str = "cpu") -> float:
    """FLOP/s at which this machine runs the given multiplies, each timed alone: total FLOPs / total time."""
    seconds = sum(time_gemm(shape, dtype, device) * count for shape, count in distinct(gemms).items())
    return sum(g.flops for g in gemms) / seconds


def _cache_file(gemms: list[Gemm], dtype: torch.dtype) -> Any:
    """Where a measurement for these shapes on this machine and torch build is kept."""
    import torch

    from pipeline.models.assets import cache_dir

    key = json.dumps(
        [
            platform.processor() or platform.machine(),
            _cpu_model(),
            torch.__version__,
            torch.get_num_threads(),
            str(dtype),
            sorted((g.m, g.k, g.n, g.count) for g in gemms),
        ]
    )
    return cache_dir() / "roofline" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _cpu_model() -> str:
    """The CPU's model name (Linux), else the platform string."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.platform()


def roofline(gemms: list[Gemm], dtype: torch.dtype, device: str) -> Roofline:
    """The GPU's datasheet peak when known, else the rate of these GEMMs: measured now (~1 s) and held
    against the best measurement kept on disk for this machine, torch build, thread count and shapes, so a
    measurement slowed by other processes never lowers the roofline."""
    import torch

    from pipeline.files import write_json

    if device == "cuda":
        name = torch.cuda.get_device_name()
        peak = gpu_peak(name)
        if peak is not None:
            return Roofline(peak, f"datasheet peak ({name})")
    where = "GPU" if device == "cuda" else f"{torch.get_num_threads()} threads"
    source = f"measured GEMMs ({str(dtype).removeprefix('torch.')}, {where})"
    rate = measure(gemms, dtype, device)
    kept = _cache_file(gemms, dtype)
    try:
        best = float(json.loads(kept.read_text())["flops_per_second"])
    except (ValueError, KeyError, TypeError, OSError):
        best = 0.0  # none yet, or a damaged entry
    if rate > best:
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            write_json(kept, {"flops_per_second": rate})
        except OSError:
            pass  # a read-only cache only loses the best figure
    return Roofline(max(rate, best), source)
