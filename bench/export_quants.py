"""GGUF size and llama.cpp's perplexity per --dtype for one run, as the Markdown table in docs/serving.md.

Exports RUN once per type with `pipeline export` (each file checked by llama.cpp against the merged fp32 model
on the run's eval split), then reads export.json. Needs llama.cpp's environment (`make llamacpp-env`).

    .venv/bin/python bench/export_quants.py runs/lora-small-<time> [--dtypes f16 q8_0 q6_k q5_k_m q4_k_m q4_0]
        [--without-imatrix]   # each k-quant once more without the importance matrix, side by side
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

DTYPES = ["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0"]
KQUANTS = ("q6_k", "q5_k_m", "q4_k_m", "q4_0")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _types(counts: dict[str, int]) -> str:
    """'Q5_0 166, Q4_K 16, ...': the file's tensors by ggml type, most first, F32 norms left out."""
    shown = sorted(((n, t) for t, n in counts.items() if t != "F32"), reverse=True)
    return ", ".join(f"{t} {n}" for n, t in shown)


def main() -> int:
    """Export each type, print one table row per type from export.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--dtypes", nargs="+", default=DTYPES)
    parser.add_argument("--output", type=Path, help="folder for the GGUF files (default RUN/export)")
    parser.add_argument("--without-imatrix", action="store_true", help="k-quants also without the imatrix")
    args = parser.parse_args()
    folder = args.output or args.run / "export"
    jobs = [(dtype, True) for dtype in args.dtypes]
    if args.without_imatrix:
        jobs += [(dtype, False) for dtype in args.dtypes if dtype in KQUANTS]
    rows, refused = [], []
    for dtype, imatrix in jobs:
        path = folder / f"{args.run.name}-{dtype}{'' if imatrix else '-no-imatrix'}.gguf"
        started = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "pipeline",
            "export",
            str(args.run),
            "--dtype",
            dtype,
            "-o",
            str(path),
        ]
        done = subprocess.run(command + ([] if imatrix else ["--no-imatrix"]), capture_output=True, text=True)
        label = dtype if imatrix or dtype not in KQUANTS else f"{dtype} (no imatrix)"
        if done.returncode != 0:  # refused by its check (outside tolerance) or broken: say which, go on
            refused.append(f"{label}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        entry = json.loads((folder / "export.json").read_text())["exports"][path.name]
        rows.append((label, entry, time.perf_counter() - started))
    if not rows:
        print("\n".join(refused), file=sys.stderr)
        return 1
    first = rows[0][1]["llama_cpp"]
    print(f"Run {args.run.name}; {first['data']}, {first['positions']} positions; CPU {_cpu()}.\n")
    print("| `--dtype` | file MiB | perplexity (llama.cpp) | vs merged fp32 | tolerance | same next token "
          "| minimum | same greedy answers | imatrix tokens | tensor types | export s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype, entry, seconds in rows:
        check = entry["llama_cpp"]
        print(
            f"| {dtype} | {entry['bytes'] / 2**20:.1f} | {check['perplexity']:.3f} "
            f"(merged {check['perplexity_reference']:.3f}) | {100 * check['perplexity_ratio_diff']:.3g} % "
            f"| {100 * check['perplexity_tolerance']:.3g} % | {100 * check['top1_agreement']:.1f} % "
            f"| {100 * check['top1_minimum']:.0f} % | {check['greedy_same']}/{check['greedy_prompts']} "
            f"| {entry.get('imatrix_tokens') or '-'} | {_types(entry['tensor_types'])} | {seconds:.0f} |"
        )
    for line in refused:
        print(f"\nNot kept: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
