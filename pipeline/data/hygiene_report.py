"""`pipeline data hygiene`: the hygiene report of a recipe's (or a data file's) splits as short lines and a
JSON file; nothing is changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.data.hygiene import check_splits
from pipeline.data.workers import default_num_proc


def _similarity(match: dict[str, Any]) -> str:
    return "exact" if match["exact"] else f"{match['similarity']:.2f}"


def _cluster_line(cluster: dict[str, Any]) -> str:
    others = ", ".join(cluster["duplicates"])
    more = cluster["examples"] - 1 - len(cluster["duplicates"])
    return f"  {cluster['kept']} (kept) ~ {others}{f' and {more} more' if more > 0 else ''}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The hygiene report as short human-readable lines (values masked)."""
    dup, cont = report["duplicates"], report["contamination"]
    lines = [
        f"examples: {report['train_examples']} train, {report['eval_examples']} eval",
        f"exact duplicates (normalised text): {dup['exact_duplicates']} in {dup['exact_groups']} group(s)",
        *(f"  {' = '.join(group)}" for group in dup["exact_examples"]),
        f"near duplicates (word 3-gram Jaccard >= {dup['threshold']}): {dup['near_duplicate_examples']} "
        f"example(s) in {dup['near_clusters']} cluster(s); dedup would drop {dup['near_duplicates']}",
        *(_cluster_line(n) for n in dup["near_examples"]),
        f"eval examples also in train: {cont['contaminated']} of {cont['eval_examples']}",
        *(f"  {c['eval']} ~ {c['train']} ({_similarity(c)})" for c in cont["examples"]),
    ]
    for split in ("train", "eval"):
        pii = report["pii"][split]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(pii["counts"].items())) or "none"
        lines.append(f"personal data / secrets in {split}: {counts}")
        lines += [f"  {example}" for kind in sorted(pii["examples"]) for example in pii["examples"][kind]]
    if "removed" in report:
        lines.append(f"removed by data.dedup: {report['removed']} train example(s)")
    if "redacted" in report:
        lines.append(f"redacted by data.redact: {sum(report['redacted'].values())} value(s)")
    return lines


def hygiene_report(
    target: str, eval_file: str | None = None, output: Path | None = None, base: str = "lora-small"
) -> dict[str, Any]:
    """Load a recipe's (or a data file's) splits, check them without changing anything, and write the
    JSON report (default <train.output_dir>/<name>-hygiene.json); returns it with `lines` for the terminal."""
    from pipeline.data.adhoc import recipe_for
    from pipeline.data.splits import load_splits
    from pipeline.files import write_json

    recipe = recipe_for(target, base, eval_file)
    path = Path(target)
    name = path.stem if path.exists() and path.suffix.lower() not in (".yaml", ".yml") else recipe.name
    report = check_splits(
        load_splits(recipe.data), num_proc=recipe.data.num_proc or default_num_proc()
    ).report
    output = output or Path(recipe.train.output_dir) / f"{name}-hygiene.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json(output, report)
    report["lines"] = [f"{target}:", *summary_lines(report), f"wrote {output}"]
    return report
