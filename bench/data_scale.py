"""Data preparation at scale: lora-small's preparation (read, validate, convert, hygiene, render, mask,
tokenize; `prepare_inputs`, what finetune runs before loading the model) of N synthetic conversations, cold
(empty data cache) and again from the cache, each in a fresh process.

The conversations come from scripts/make_conversations.py (the bundled Python-docs Q&A, reworded, 1-3
exchanges each, some near and exact duplicates), written under --workdir (never committed). Per size the
table shows the wall time cold and cached, the CPU time (user + sys, this process and its workers), the peak
RSS (the main process and the largest worker; no model is loaded) and records/s; "s per 1k" shows whether
growth is linear. The last line is JSON with every figure and whether the issue-23 targets hold (1M records:
cold <= 300 s, cached <= 10 s, peak RSS <= 4 GB).

    .venv/bin/python bench/data_scale.py                          # 10k, 100k, 1M (about 5 min on 2 quiet cores)
    .venv/bin/python bench/data_scale.py --sizes 10000 100000     # quicker
    .venv/bin/python bench/data_scale.py --num-proc 1             # one process, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"cold_s": 300.0, "cached_s": 10.0, "peak_rss_gb": 4.0}  # issue 23, at 1,000,000 records


def _child(data: Path, num_proc: int | None) -> None:
    """Run the preparation once and print its measurements as JSON (in a fresh process)."""
    sys.path.insert(0, str(ROOT))
    from pipeline.config.loader import load_recipe
    from pipeline.train.inputs import prepare_inputs

    overrides = [f"data.train={data}", "eval.enabled=false"]
    if num_proc:
        overrides.append(f"data.num_proc={num_proc}")
    recipe = load_recipe("lora-small", overrides)
    start = time.perf_counter()
    inputs = prepare_inputs(recipe)
    wall = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    dup = inputs.hygiene["duplicates"]
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
                "rss_main_gb": me.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
                "rss_worker_gb": kids.ru_maxrss / 2**20,
                "rows": len(inputs.train),
                "tokens": int(sum(inputs.train["num_tokens"])) if len(inputs.train) < 200_000 else None,
                "near_clusters": dup["near_clusters"],
                "near_examples": dup["near_duplicate_examples"],
                "exact": dup["exact_duplicates"],
            }
        )
    )


def _run(data: Path, cache: Path, num_proc: int | None) -> dict[str, Any]:
    env = {**os.environ, "PIPELINE_CACHE": str(cache), "PIPELINE_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, __file__, "--child", str(data)]
    if num_proc:
        command += ["--num-proc", str(num_proc)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(f"preparation of {data} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assets() -> Path:
    """The model assets of the pipeline cache this process uses (prepared once, then reused)."""
    sys.path.insert(0, str(ROOT))
    from pipeline.models.assets import cache_dir

    (cache_dir() / "models").mkdir(parents=True, exist_ok=True)
    return cache_dir() / "models"


def main() -> None:
    """Generate each size, prepare it cold and cached, print the table and the JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--num-proc", type=int, default=None, help="data.num_proc (default: the usable cores)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pipeline-data-scale")
    parser.add_argument("--keep", action="store_true", help="Keep the generated files and caches.")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.num_proc)
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_conversations import write_conversations

    rows = []
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} usable core(s), data.num_proc={args.num_proc or cores}; lora-small preparation, no model")
    header = f"{'records':>10} {'cold s':>8} {'cached s':>9} {'CPU s':>7} {'peak RSS GB':>12} {'records/s':>10} {'s per 1k':>9}"
    print(header)
    for size in args.sizes:
        folder = args.workdir / str(size)
        shutil.rmtree(folder, ignore_errors=True)
        data = write_conversations(size, folder / "conversations.jsonl")
        cache = folder / "cache"  # empty but for the model assets (a fresh cache would rebuild them)
        cache.mkdir()
        (cache / "models").symlink_to(_assets(), target_is_directory=True)
        cold = _run(data, folder / "cache", args.num_proc)
        cached = _run(data, folder / "cache", args.num_proc)
        rss = max(cold["rss_main_gb"], cold["rss_worker_gb"], cached["rss_main_gb"])
        row = {"records": size, "cold": cold, "cached": cached, "peak_rss_gb": rss}
        rows.append(row)
        print(
            f"{size:>10,} {cold['wall_s']:>8.1f} {cached['wall_s']:>9.1f} {cold['cpu_s']:>7.0f} {rss:>12.2f} "
            f"{size / cold['wall_s']:>10,.0f} {1000 * cold['wall_s'] / size:>9.3f}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    largest = rows[-1]
    verdict = {
        "cold_ok": largest["cold"]["wall_s"] <= TARGETS["cold_s"],
        "cached_ok": largest["cached"]["wall_s"] <= TARGETS["cached_s"],
        "rss_ok": largest["peak_rss_gb"] <= TARGETS["peak_rss_gb"],
        "at_records": largest["records"],
    }
    print(json.dumps({"cores": cores, "rows": rows, "targets": TARGETS, **verdict}))


if __name__ == "__main__":
    main()
