"""The report: metrics.json, eval_examples.jsonl, PNG plots, report.md and a self-contained report.html."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config.loader import validate_recipe_dict
from pipeline.evaluation.report import comparison_rows, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics() -> dict[str, Any]:
    side = {
        "perplexity": 12.5,
        "perplexity_all_tokens": 20.0,
        "nll": 2.53,
        "tokens": 100,
        "examples": 3,
        "similarity": {"mean": 0.4, "median": 0.4, "p10": 0.2, "n": 2},
        "lexical": {"rougeL": 0.3},
        "generation": {"tokens_per_second": 50.0},
        "seconds": {"perplexity": 1.5},
    }
    adapted = {
        **side,
        "perplexity": 8.0,
        "nll": 2.08,
        "similarity": {"mean": 0.6, "median": 0.6, "p10": 0.5, "n": 2},
    }
    history = [{"step": s, "loss": 3.0 - 0.1 * s, "learning_rate": 1e-4 * s} for s in range(1, 11)]
    return {
        "recipe": "demo",
        "model": "tiny",
        "base": side,
        "adapted": adapted,
        "train": {"steps": 10, "loss": 2.5, "seconds": 12.0, "log_history": history},
        "gate": {
            "enabled": True,
            "passed": True,
            "checks": [
                {
                    "metric": "perplexity",
                    "base": 12.5,
                    "adapted": 8.0,
                    "limit": 12.5,
                    "better": "lower",
                    "passed": True,
                }
            ],
        },
    }


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "record": 0,
            "prompt": "What | is <b>x</b>?",
            "reference": "x is y",
            "base_perplexity": 12.0,
            "adapted_perplexity": 7.0,
            "base_answer": "no idea",
            "adapted_answer": "x is y\nindeed",
            "base_similarity": 0.3,
            "adapted_similarity": 0.9,
        },
        {"record": 1, "base_perplexity": float("nan"), "adapted_perplexity": 9.0},
    ]


def test_write_report_files(tmp_path: Path) -> None:
    recipe = validate_recipe_dict(
        {"data": {"train": "x.jsonl"}, "eval": {"samples": 5}}, "demo.yaml", name="demo"
    )
    metrics = _metrics()
    write_report(tmp_path, recipe, metrics, _rows())

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    rows = [json.loads(line) for line in (tmp_path / "eval_examples.jsonl").read_text().splitlines()]
    assert rows[1]["base_perplexity"] is None  # NaN is written as null: the file stays valid JSON
    for name in ("training.png", "perplexity.png", "similarity.png"):
        assert (tmp_path / "plots" / name).read_bytes().startswith(PNG_MAGIC)

    markdown = (tmp_path / "report.md").read_text()
    assert "| perplexity (trained tokens) | 12.5 | 8 | -4.5 | lower |" in markdown
    assert "What \\| is <b>x</b>?" in markdown and "x is y<br>indeed<br>(cosine 0.90)" in markdown
    assert "![training loss" in markdown and "(plots/training.png)" in markdown
    assert "PASS: enforced (eval.fail_if_worse)." in markdown
    assert yaml.safe_load(markdown.split("```yaml\n")[1].split("```")[0])["eval"]["samples"] == 5

    html = (tmp_path / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert "What | is &lt;b&gt;x&lt;/b&gt;?" in html and "<b>x</b>" not in html
    assert not re.search(r"""(src|href)=["']?(https?:|//|plots/)""", html)


def test_comparison_rows_keep_model_card_names_and_skip_absent_metrics() -> None:
    rows = comparison_rows(_metrics())
    names = [r[0] for r in rows]
    assert names[:3] == [
        "perplexity (trained tokens)",
        "perplexity (all tokens)",
        "answer similarity (mean cosine)",
    ]
    assert ("ROUGE-L F1", 0.3, 0.3, "higher") in rows and "chrF" not in names


def test_without_base_metrics_the_report_console_and_card_show_the_adapted_model_only(tmp_path: Path) -> None:
    from rich.console import Console

    from pipeline.evaluation.report import print_summary
    from pipeline.evaluation.runner import write_results
    from pipeline.hub.card import build_model_card

    recipe = validate_recipe_dict(
        {"data": {"train": "x.jsonl"}, "eval": {"base": False}}, "demo.yaml", name="demo"
    )
    metrics = {k: v for k, v in _metrics().items() if k not in ("base", "gate")}
    rows = [{k: v for k, v in r.items() if not k.startswith("base_")} for r in _rows()]
    written = write_results(tmp_path, recipe, metrics, None)
    assert "gate" not in written and "comparison" not in written  # nothing to compare with
    write_report(tmp_path, recipe, written, rows)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Adapted model" in markdown and "## Base vs adapted" not in markdown
    assert "| perplexity (trained tokens) | 8 | lower |" in markdown
    assert "The base model was not evaluated (eval.base: false" in markdown
    assert "## Regression gate" not in markdown and "base eval" not in markdown
    assert (tmp_path / "plots" / "perplexity.png").read_bytes().startswith(PNG_MAGIC)

    console = Console(record=True, width=120)
    print_summary(written, tmp_path, console)
    shown = console.export_text()
    assert (
        "adapted (held-out eval split)" in shown and "delta" not in shown and "regression gate" not in shown
    )
    assert "The base model was not evaluated" in shown

    card = str(build_model_card(recipe, written))
    assert "## Evaluation (held-out split, adapted only: the base was not evaluated)" in card
    assert "| perplexity (trained tokens) | 8 |" in card and "base model" not in card.split("---")[1]


def test_reused_base_metrics_are_named_in_the_report_and_console(tmp_path: Path) -> None:
    from rich.console import Console

    from pipeline.evaluation.report import print_summary

    recipe = validate_recipe_dict({"data": {"train": "x.jsonl"}}, "demo.yaml", name="demo")
    metrics = {
        **_metrics(),
        "base_cache": {"key": "ab12", "computed": "2026-11-30T00:00:00+00:00", "reused": True},
    }
    write_report(tmp_path, recipe, metrics, _rows())
    markdown = " ".join((tmp_path / "report.md").read_text().split())
    assert "Base metrics reused from cache ab12 (computed 2026-11-30T00:00:00+00:00)." in markdown
    assert "| base eval: perplexity (earlier run, reused from cache) | 1.5 |" in markdown
    console = Console(record=True, width=120)
    print_summary(metrics, tmp_path, console)
    assert "base metrics reused from cache ab12 (computed 2026-11-30T00:00:00+00:00)" in console.export_text()


def test_the_mean_similarity_and_the_closer_share_carry_their_95_percent_intervals(tmp_path: Path) -> None:
    from rich.console import Console

    from pipeline.evaluation.report import print_summary
    from pipeline.evaluation.runner import write_results

    recipe = validate_recipe_dict({"data": {"train": "x.jsonl"}}, "demo.yaml", name="demo")
    metrics = _metrics()
    metrics["base"]["similarity"] = {
        "mean": 0.4,
        "mean_ci95": [0.35, 0.45],
        "median": 0.4,
        "p10": 0.2,
        "n": 8,
    }
    metrics["adapted"]["similarity"] = {
        "mean": 0.6,
        "mean_ci95": [0.5, 0.7],
        "median": 0.6,
        "p10": 0.5,
        "n": 8,
    }
    metrics["base"]["per_example"] = {"similarity": [0.5] * 8}
    metrics["adapted"]["per_example"] = {"similarity": [0.9] * 6 + [0.1] * 2}
    written = write_results(tmp_path, recipe, metrics, None)

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["comparison"]["adapted_closer_rate"] == 0.75
    assert saved["comparison"]["adapted_closer_rate_ci95"] == pytest.approx([0.4093, 0.9285], abs=1e-4)
    assert saved["adapted"]["similarity"]["mean_ci95"] == [0.5, 0.7]
    markdown = (tmp_path / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| answer similarity (mean cosine)")]
    following = markdown.splitlines()[markdown.splitlines().index(rows[0]) + 1]
    assert (
        following
        == "| 95% confidence interval of the mean (8 answers) | [0.350, 0.450] | [0.500, 0.700] |  |  |"
    )
    closer = "75% (95% confidence interval [41%, 93%], 8 answers)"
    assert f"| answers closer to the reference than the base's |  | {closer} |  | higher |" in markdown
    assert closer in (tmp_path / "report.html").read_text()

    console = Console(record=True, width=160)
    print_summary(written, tmp_path, console)
    shown = console.export_text()
    assert f"adapted answer closer to the reference than the base's: {closer}" in shown
    assert re.search(
        r"95% confidence interval of the mean \(8 answers\)\s+│\s+\[0\.350, 0\.450\]\s+│\s+\[0\.500, 0\.700\]",
        shown,
    )
