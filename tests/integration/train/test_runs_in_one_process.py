"""Two recipes trained one after the other in one process give what each gives alone in a fresh process: no
speed lever, attention switch or library patch of the first run reaches the second."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

DRIVER = """
import json, sys
from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune
found = {}
for path in sys.argv[1:]:
    run = finetune(load_recipe(path))
    history = run.metrics["train"]["log_history"]
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    found[path] = {
        "losses": [entry["loss"] for entry in history if "loss" in entry],
        "rewards": [entry.get("reward") for entry in history if "loss" in entry],
        "base": run.metrics["base"],
        "adapted": run.metrics["adapted"],
        "levers": manifest["speed_levers"],
    }
print("RESULT " + json.dumps(found))
"""
PROMPTS = [{"prompt": f"What is {a} plus {b}?", "answer": str(a + b)} for a in range(4) for b in range(3)]


def _run(*recipes: Path) -> dict[str, Any]:
    env = {**os.environ, "PIPELINE_TRACEBACK": "1"}
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *map(str, recipes)],
        capture_output=True,
        text=True,
        env=env,
        timeout=500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def _scores(side: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of an evaluation that do not depend on wall time, flattened to dotted keys."""
    flat: dict[str, float] = {}
    for key, value in side.items():
        if key in ("seconds", "generation"):
            continue
        if isinstance(value, dict):
            flat.update(_scores(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)):
            flat[prefix + key] = value
    return flat


def test_sft_then_grpo_in_one_process_equals_each_alone(make_recipe: Any, tmp_path: Path) -> None:
    sft = make_recipe(name="sft", train={"max_steps": 2}, eval={"generate_examples": 1})
    prompts = write_jsonl(tmp_path / "prompts" / "train.jsonl", PROMPTS)
    grpo = make_recipe(
        name="grpo",
        data={"train": str(prompts), "eval": str(prompts), "allow_contamination": True},
        train={"stage": "grpo", "batch_size": 4, "max_steps": 2},
        grpo={
            "num_generations": 2,
            "max_completion_length": 8,
            "rewards": [{"function": "length", "target_chars": 12}],
        },
        eval={"generate_examples": 2},
    )
    together = _run(sft, grpo)
    alone = {**_run(sft), **_run(grpo)}
    for path in (str(sft), str(grpo)):
        assert together[path]["losses"] == pytest.approx(alone[path]["losses"], rel=1e-6, abs=1e-7), path
        assert together[path]["rewards"] == alone[path]["rewards"]
        for side in ("base", "adapted"):
            assert _scores(together[path][side]) == pytest.approx(_scores(alone[path][side]), rel=1e-6), path
        assert together[path]["levers"] == alone[path]["levers"]
    assert together[str(grpo)]["levers"]["compact_lm_head"] == "on"  # GRPO sets the lever itself now
