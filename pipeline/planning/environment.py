"""What `pipeline env` reports: versions, CPU and GPUs, speed levers, caches and offline state; never a token.

Everything here is read, nothing is changed or downloaded: the speed levers are judged by each patch's
canary() against the installed libraries, without training.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Experiment trackers train.report_to can name (the extras wandb, mlflow and trackio install them).
TRACKERS = ("tensorboard", "wandb", "mlflow-skinny", "mlflow", "trackio")
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# /proc/cpuinfo flags that decide bf16 matmul speed (AVX512-BF16 or AMX: native bf16).
CPU_FLAGS = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_bf16": "AVX512-BF16", "amx_tile": "AMX"}


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of python, torch, the libraries that shape training and the trackers (None: not installed)."""
    import torch

    from pipeline.train.manifest import PACKAGES

    # torch.__version__ names the build (2.13.0+cpu, 2.14.1+cu130); the wheel's metadata may not.
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in (*PACKAGES, *TRACKERS):
        versions[name] = _version(name)
    return versions


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str], int]:
    """CPU model name, feature flags and logical CPU count, from /proc/cpuinfo where there is one."""
    model, flags = platform.processor() or platform.machine(), set()
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return model, flags, os.cpu_count() or 1


def cpu_report(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, its bf16-relevant features, torch's CPU kernel level and whether bf16 is native."""
    import torch

    from pipeline.models.precision import bf16_is_native

    model, flags, count = cpu_info(cpuinfo)
    return {
        "model": model,
        "logical_cpus": count,
        "torch_threads": torch.get_num_threads(),
        "features": {label: flag in flags for flag, label in CPU_FLAGS.items()} if flags else {},
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": bf16_is_native(),
    }


def gpu_report() -> dict[str, Any]:
    """CUDA version and each visible GPU's name, memory (GiB) and compute capability; empty list on CPU."""
    import torch

    available = torch.cuda.is_available()
    devices = []
    for index in range(torch.cuda.device_count() if available else 0):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return {"cuda": torch.version.cuda if available else None, "devices": devices}


def speed_levers() -> dict[str, dict[str, str]]:
    """Each patch in pipeline.train.patches: its library with version, and whether its canary still fits."""
    import pipeline.train.patches as patches
    from pipeline.train.patches.registry import library_version

    levers = {}
    for info in sorted(pkgutil.iter_modules(patches.__path__), key=lambda m: m.name):
        if info.name == "registry":
            continue
        module = importlib.import_module(f"{patches.__name__}.{info.name}")
        library = getattr(module, "LIBRARY", "?")
        try:
            problem = module.canary()
        except Exception as exc:  # a missing or broken library: the lever is off, env still reports
            problem = f"{type(exc).__name__}: {exc}"
        levers[info.name] = {
            "library": library_version(library),
            "status": "fits" if problem is None else f"off: {problem}",
            "does": (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else "",
        }
    return levers


def precision_report() -> dict[str, str]:
    """What train.precision auto and native resolve to here (unquantized models)."""
    from pipeline.models.precision import resolved_precision

    return {name: resolved_precision(name, "none") for name in ("auto", "native")}


def cache_report() -> dict[str, str]:
    """Where the Hub, datasets and this pipeline keep their caches (the tokenized data sit in pipeline/datasets)."""
    from datasets import config
    from huggingface_hub import constants

    from pipeline.models.assets import cache_dir

    return {
        "HF_HOME": str(constants.HF_HOME),
        "hub": str(constants.HF_HUB_CACHE),
        "datasets": str(config.HF_DATASETS_CACHE),
        "pipeline": str(cache_dir()),
        "tokenized_data": str(cache_dir() / "datasets"),
    }


def _endpoint() -> str | None:
    """HF_ENDPOINT without any user:password part."""
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        return None
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def hub_report() -> dict[str, Any]:
    """Offline switches as set, the Hub endpoint, and whether a token is present (set/not set, never its value)."""
    from huggingface_hub import constants

    from pipeline.models.assets import is_offline

    tokens = {name: "set" if os.environ.get(name) else "not set" for name in TOKEN_VARIABLES}
    tokens["token file"] = "present" if Path(constants.HF_TOKEN_PATH).is_file() else "absent"
    return {
        "offline": is_offline(),
        "variables": {name: os.environ.get(name) for name in OFFLINE_VARIABLES if name in os.environ},
        "endpoint": _endpoint(),
        "token": tokens,
    }


def collect() -> dict[str, Any]:
    """The whole report as plain data (what `pipeline env --json` prints)."""
    return {
        "platform": platform.platform(),
        "versions": package_versions(),
        "cpu": cpu_report(),
        "gpu": gpu_report(),
        "precision": precision_report(),
        "speed_levers": speed_levers(),
        "caches": cache_report(),
        "hub": hub_report(),
    }


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def to_text(report: dict[str, Any]) -> str:
    """The report as one markdown-friendly block to paste into a bug report."""
    versions = report["versions"]
    lines = [f"- platform: {report['platform']}"]
    lines += [f"- {name}: {version or 'not installed'}" for name, version in versions.items()]
    cpu = report["cpu"]
    features = ", ".join(f"{label} {_yes(on)}" for label, on in cpu["features"].items()) or "unknown"
    lines += [
        f"- CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs, torch uses {cpu['torch_threads']} threads)",
        f"- CPU features: {features}; torch kernels: {cpu['torch_capability']}; "
        f"native bf16: {_yes(cpu['native_bf16'])}",
    ]
    gpu = report["gpu"]
    devices = "; ".join(
        f"{d['name']} ({d['memory_gib']} GiB, compute {d['capability']})" for d in gpu["devices"]
    )
    lines.append(f"- GPUs: {devices}, CUDA {gpu['cuda']}" if devices else "- GPUs: none (CUDA not available)")
    precision = report["precision"]
    lines.append(f"- train.precision: auto -> {precision['auto']}, native -> {precision['native']}")
    lines.append("- speed levers (canaries against the installed libraries):")
    lines += [
        f"  - {name} ({lever['library']}): {lever['status']}; {lever['does']}"
        for name, lever in report["speed_levers"].items()
    ]
    lines.append("- caches:")
    lines += [f"  - {name}: {path}" for name, path in report["caches"].items()]
    hub = report["hub"]
    switches = ", ".join(f"{name}={value}" for name, value in hub["variables"].items()) or "none set"
    lines.append(f"- offline: {_yes(hub['offline'])} ({switches})")
    lines.append(f"- HF_ENDPOINT: {hub['endpoint'] or 'default (huggingface.co)'}")
    lines.append("- token: " + ", ".join(f"{name} {state}" for name, state in hub["token"].items()))
    return "\n".join(lines)
