"""workflow.finetune: the same pieces as the tests and benchmarks use, and a manifest that names its levers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.loader import load_recipe
from pipeline.errors import RecipeError
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model
from pipeline.train.patches import registry
from pipeline.workflow import finetune


def test_finetune_equals_its_pieces_and_records_its_speed_levers(make_recipe: Any, tmp_path: Path) -> None:
    recipe = load_recipe(str(make_recipe(train={"max_steps": 2}, eval={"enabled": False})))
    registry.record("left_over_from_an_earlier_run", True)
    run = finetune(recipe)
    inputs = prepare_inputs(recipe)
    pieces = train_model(recipe, tmp_path / "pieces", load_model(recipe), inputs.tokenizer, inputs.train)
    assert pieces.metrics["loss"] == pytest.approx(run.metrics["train"]["loss"], abs=1e-6)
    train = run.metrics["train"]
    assert train["tokens_per_second"] > 0 and 0 < train["roofline_share"] < 2
    assert train["achieved_gflops"] == pytest.approx(
        train["flops_per_token"] * train["tokens_per_second"] / 1e9, rel=0.02
    )
    assert train["roofline"]["source"].startswith("measured GEMMs")
    manifest = json.loads((run.run_dir / "manifest.json").read_text(encoding="utf-8"))
    levers = manifest["speed_levers"]
    assert levers["compact_lm_head"] == "on" and levers["lean_cpu_head"] == "on"
    assert levers["packed_sdpa"] == "on"  # padding-free rows (the default) on an SDPA model
    assert levers["shuffled_length_groups"] == "off: train.group_by_length is off"
    assert "left_over_from_an_earlier_run" not in levers


def test_finetune_runs_the_library_cross_check_before_loading(make_recipe: Any) -> None:
    """load_recipe knows only the schema; finetune itself asks trl/peft before any weight or data loads."""
    recipe = load_recipe(str(make_recipe(adapter={"target_modules": ["q_proj", "lm_head"]})))
    with pytest.raises(RecipeError, match=r"rejected by trl/peft: adapter\.target_modules includes lm_head"):
        finetune(recipe)
    assert not Path(recipe.train.output_dir).exists() or not any(Path(recipe.train.output_dir).iterdir())
