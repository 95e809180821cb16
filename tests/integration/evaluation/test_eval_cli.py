"""`pipeline eval` on each kind of target gives the numbers `pipeline finetune` computed, and a full report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.loader import load_recipe
from pipeline.runs.metrics import SCHEMA_VERSION as METRICS_SCHEMA
from pipeline.workflow import finetune

README = Path(__file__).resolve().parents[3] / "docs" / "evaluation.md"  # the metrics.json table
EVAL_KEYS = {
    "schema_version",
    "recipe",
    "model",
    "target",
    "target_kind",
    "base",
    "adapted",
    "comparison",
    "gate",
}


@pytest.fixture
def run_dir(make_recipe: Any) -> Path:
    recipe = make_recipe(
        data={"allow_contamination": True}, eval={"generate_examples": 2, "max_new_tokens": 6, "samples": 2}
    )
    return finetune(load_recipe(str(recipe))).run_dir


def _eval(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return json.loads((Path(args[args.index("--output") + 1]) / "metrics.json").read_text())


def _key_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not prefix and key not in EVAL_KEYS:
            continue  # sections other parts of finetune add (train, checks, hygiene, ...)
        if isinstance(value, dict):
            paths |= _key_paths(value, f"{path}.")
        else:
            paths.add(path)
    return paths


def _documented(path: str, readme: str) -> bool:
    """`a.b.c` is in the README as `a.b.c` or `a.b.{x,c,y}`, with base./adapted. written as <side>."""
    path = re.sub(r"^(base|adapted)\.", "<side>.", path)
    parent, _, leaf = path.rpartition(".")
    braces = re.findall(rf"`{re.escape(parent)}\.\{{([^}}]*)\}}`", readme) if parent else []
    return f"`{path}`" in readme or any(leaf in group.split(",") for group in braces)


def test_finetune_report_then_eval_on_each_target(
    run_dir: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """One finetune (slow part) serves both checks."""
    _check_run_folder(run_dir)
    _check_eval_targets(run_dir, tmp_path, tiny_model_dir)


def _check_run_folder(run_dir: Path) -> None:
    for name in (
        "metrics.json",
        "report.md",
        "report.html",
        "eval_examples.jsonl",
        "plots/training.png",
        "plots/perplexity.png",
        "plots/similarity.png",
    ):
        assert (run_dir / name).is_file(), f"missing {name}"
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r"""(src|href)=["']?(https?:|//|plots/)""", html), (
        "report.html must be self-contained"
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["schema_version"] == METRICS_SCHEMA == 2
    for side in ("base", "adapted"):
        assert metrics[side]["tokens"] > 0 and metrics[side]["perplexity"] > 1
        assert metrics[side]["generation"]["tokens_per_second"] > 0
        assert -1 <= metrics[side]["similarity"]["mean"] <= 1
    assert metrics["comparison"]["deltas"]["perplexity"] == pytest.approx(
        metrics["adapted"]["perplexity"] - metrics["base"]["perplexity"]
    )
    assert metrics["gate"]["enabled"] is False and len(metrics["gate"]["checks"]) == 2
    rows = [json.loads(line) for line in (run_dir / "eval_examples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["prompt"] == "What does json.dumps do?"
    assert (
        isinstance(rows[0]["adapted_answer"], str)
        and "base_similarity" in rows[1]
        and "prompt" not in rows[3]
    )
    report = (run_dir / "report.md").read_text()
    assert (
        "| perplexity (trained tokens) |" in report and "![" in report and "## Sample generations" in report
    )
    # metrics.json is documented: every key written is in the README's table.
    missing = sorted(p for p in _key_paths(metrics) if not _documented(p, README.read_text()))
    assert not missing, f"metrics.json keys missing from docs/evaluation.md: {missing}"


def _check_eval_targets(run_dir: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    trained = json.loads((run_dir / "metrics.json").read_text())
    base_ppl, adapted_ppl = trained["base"]["perplexity"], trained["adapted"]["perplexity"]
    assert base_ppl != pytest.approx(adapted_ppl, rel=1e-4), "training did not change the model"

    from_run = _eval(str(run_dir), "--output", str(tmp_path / "run"))
    assert from_run["target_kind"] == "run"
    assert from_run["base"]["perplexity"] == pytest.approx(base_ppl, rel=1e-5)
    assert from_run["adapted"]["perplexity"] == pytest.approx(adapted_ppl, rel=1e-5)
    assert from_run["adapted"]["generation"]["examples"] == 2
    assert (tmp_path / "run" / "report.html").is_file()

    data = run_dir.parent.parent / "data" / "eval.jsonl"
    from_adapter = _eval(
        str(run_dir / "adapter"),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "adapter"),
        "eval.generate_examples=0",
        "train.max_length=64",
    )
    assert from_adapter["target_kind"] == "adapter" and "similarity" not in from_adapter["adapted"]
    assert from_adapter["adapted"]["perplexity"] == pytest.approx(adapted_ppl, rel=1e-5)
    assert from_adapter["base"]["perplexity"] == pytest.approx(base_ppl, rel=1e-5)

    from_model = _eval(
        str(tiny_model_dir),
        "--data",
        str(data),
        "--output",
        str(tmp_path / "model"),
        "eval.generate_examples=0",
        "train.max_length=64",
    )
    assert from_model["target_kind"] == "model" and "base" not in from_model
    assert from_model["adapted"]["perplexity"] == pytest.approx(base_ppl, rel=1e-5)


def test_eval_without_data_is_one_line_error(tiny_model_dir: Path) -> None:
    result = CliRunner().invoke(app, ["eval", str(tiny_model_dir)])
    assert result.exit_code != 0
    assert "pass --recipe NAME or --data FILE" in str(result.exception)
