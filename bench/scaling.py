"""Throughput as rows get longer and models larger: ours vs plain TRL vs TRL `padding_free`, one invocation.

For each model shape and max_length, `bench/long_conversations.py` makes chats of real text up to that
length, and `bench/train_throughput.py` trains each variant on them in a fresh process (the same steps,
batch and LoRA settings) with about the same number of tokens per step at every length (--tokens-per-step;
batch = tokens-per-step / length). Larger shapes are SmolLM2-360M and -1.7B configurations with random
weights (no such weights are offline; speed does not depend on their values). Prints a table, writes the
curves to bench/scaling.png and, last, a JSON line.

    .venv/bin/python bench/scaling.py                                   # 135M at 256/1k/2k/4k, larger at 1k
    .venv/bin/python bench/scaling.py --lengths 256 1024 --models 135M --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Published SmolLM2 shapes (config.json of HuggingFaceTB/SmolLM2-360M and -1.7B); weights are random.
SHAPES: dict[str, dict[str, int] | None] = {
    "135M": None,  # the packaged SmolLM2-135M-Instruct, real weights
    "360M": {"hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
             "num_attention_heads": 15, "num_key_value_heads": 5},
    "1.7B": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
             "num_attention_heads": 32, "num_key_value_heads": 32},
}  # fmt: skip
VARIANTS = {"a": "plain TRL", "b": "TRL padding_free", "c": "ours"}


def _model_dir(name: str, work: Path) -> Path | None:
    """A folder with the packaged tokenizer and a config.json of the named shape (None: the real 135M)."""
    shape = SHAPES[name]
    if shape is None:
        return None
    from pipeline.config.loader import load_recipe
    from pipeline.models.assets import resolve_model

    packaged = resolve_model(load_recipe("lora-small").model.name)
    folder = work / f"smollm2-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in packaged.iterdir():
        if item.name != "config.json" and item.suffix in (".json", ".txt", ".jinja"):
            shutil.copy(item, folder / item.name)
    config = json.loads((packaged / "config.json").read_text())
    config.update(shape)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _run(
    args: argparse.Namespace, data: Path, length: int, model: Path | None, variants: str
) -> dict[str, Any]:
    """One train_throughput invocation (one round of the variants) at this length; its JSON rows."""
    batch = max(1, args.tokens_per_step // length)
    command = [sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--rounds", "1"]
    command += ["--steps", str(args.steps), "--batch", str(batch), "--max-length", str(length)]
    command += ["--data", str(data), "--variants", variants]
    command += ["--model", str(model), "--random-init"] if model else []
    child = subprocess.run(command, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        sys.exit(f"train_throughput failed at length {length}:\n{child.stdout[-2000:]}{child.stderr[-2000:]}")
    rows = [line for line in child.stdout.splitlines() if line.startswith("round")]
    summary = json.loads(child.stdout.strip().splitlines()[-1])
    return {"batch": batch, "rows": rows, **summary}


def _ratio(rates: dict[str, float], baseline: str) -> str:
    """ours / baseline as '2.31x', or '-' when one of them did not run."""
    return f"{rates['c'] / rates[baseline]:.2f}x" if "c" in rates and baseline in rates else "-"


def _plot(results: list[dict[str, Any]], target: Path) -> None:
    """Left: tokens/s against max_length for the real 135M model, one line per variant. Right: ours over each
    TRL variant at max_length 1024 (the length every model shape runs), one bar group per shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    figure, (lengths, shapes) = plt.subplots(1, 2, figsize=(11, 3.8))
    real = [r for r in results if r["model"] == "135M"]
    for variant, label in VARIANTS.items():
        points = [(r["length"], r["tokens_per_s"][variant]) for r in real if variant in r["tokens_per_s"]]
        if points:
            lengths.plot(*zip(*points, strict=True), marker="o", label=label)
    lengths.set_xscale("log", base=2)
    lengths.xaxis.set_minor_formatter(NullFormatter())
    lengths.set_xticks([r["length"] for r in real], [str(r["length"]) for r in real])
    lengths.set(title="SmolLM2-135M: longer rows", xlabel="max_length (tokens)", ylabel="real tokens/s")
    lengths.set_ylim(bottom=0)
    lengths.grid(alpha=0.3)
    lengths.legend()
    common = [r for r in results if r["length"] == 1024 and {"a", "b", "c"} <= set(r["tokens_per_s"])]
    highest = max(
        (r["tokens_per_s"]["c"] / min(r["tokens_per_s"]["a"], r["tokens_per_s"]["b"]) for r in common),
        default=1,
    )
    shapes.set_ylim(0, highest * 1.3)  # room for the legend above the bars
    for offset, (baseline, label) in enumerate((("a", "ours / plain TRL"), ("b", "ours / TRL padding_free"))):
        ratios = [r["tokens_per_s"]["c"] / r["tokens_per_s"][baseline] for r in common]
        bars = shapes.bar([i + 0.38 * offset for i in range(len(common))], ratios, width=0.36, label=label)
        shapes.bar_label(bars, fmt="%.2fx", fontsize=8)
    shapes.axhline(1.0, color="grey", linewidth=0.8)
    shapes.set_xticks([i + 0.19 for i in range(len(common))], [f"SmolLM2-{r['model']}" for r in common])
    shapes.set(title="larger models, max_length 1024", ylabel="speed-up (real tokens/s)")
    shapes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def main() -> None:
    """Every (model, length) point, variants alternating within it; table, plot and JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["135M", "360M", "1.7B"], choices=sorted(SHAPES))
    parser.add_argument("--lengths", nargs="+", type=int, default=[256, 1024, 2048, 4096])
    parser.add_argument(
        "--large-lengths", nargs="+", type=int, default=[1024], help="lengths for the random-weight shapes"
    )
    parser.add_argument("--tokens-per-step", type=int, default=4096)
    parser.add_argument(
        "--steps", type=int, default=3, help="optimizer steps per run; the first is not timed"
    )
    parser.add_argument("--variants", default="abc")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "scaling.png")
    parser.add_argument(
        "--results",
        type=Path,
        default=ROOT / "bench" / "scaling.json",
        help="points kept across invocations: a re-measured (model, length) replaces the kept one",
    )
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the plot from --results, measure nothing"
    )
    args = parser.parse_args()
    if args.plot_only:
        _plot(json.loads(args.results.read_text())["points"], args.plot)
        print(f"plot: {args.plot}")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    from long_conversations import conversations  # type: ignore[import-not-found]

    from pipeline.config.loader import load_recipe
    from pipeline.models.loading import load_tokenizer

    tokenizer = load_tokenizer(load_recipe("lora-small").model)
    kept = json.loads(args.results.read_text())["points"] if args.results.exists() else []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for model in args.models:
            folder = _model_dir(model, work)
            for length in args.lengths if folder is None else args.large_lengths:
                data = work / f"long-{length}.jsonl"
                if not data.exists():
                    count = max(64, 4 * args.tokens_per_step * args.steps // length)
                    chats = conversations(length, count, tokenizer)
                    data.write_text("".join(json.dumps(c) + "\n" for c in chats), encoding="utf-8")
                run = _run(args, data, length, folder, args.variants)
                point = {"model": model, "length": length, "batch": run["batch"]}
                point["tokens_per_s"] = run["median_real_tokens_per_s"]
                point["roofline_share"] = run.get("median_roofline_share", {})
                point["load_average_1min"] = run["load_average_1min"]
                results.append(point)
                for row in run["rows"]:
                    print(f"{model:>5} L={length:<5} batch {run['batch']:<3} {row}", flush=True)
    measured = {(p["model"], p["length"]) for p in results}
    results = sorted(
        [p for p in kept if (p["model"], p["length"]) not in measured] + results,
        key=lambda p: (list(SHAPES).index(p["model"]), p["length"]),
    )
    args.results.write_text(json.dumps({"points": results}, indent=1) + "\n", encoding="utf-8")
    print(
        "\n| model | max_length | batch | plain TRL | TRL padding_free | ours | ours/plain | ours/padding_free |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for p in results:
        t = p["tokens_per_s"]
        print(
            f"| {p['model']} | {p['length']} | {p['batch']} | {t.get('a', '-')} | {t.get('b', '-')} | "
            f"{t.get('c', '-')} | {_ratio(t, 'a')} | {_ratio(t, 'b')} |"
        )
    _plot(results, args.plot)
    print(f"plot: {args.plot}")
    print(json.dumps({"benchmark": "scaling", "points": results, "load_average_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
