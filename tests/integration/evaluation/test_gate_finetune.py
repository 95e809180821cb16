"""The regression gate through the real CLI: a destructive learning rate makes `pipeline finetune` exit
non-zero with one error line, and the run folder still holds the report that explains why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from pipeline.errors import EvaluationGateError


def test_destructive_learning_rate_fails_the_gate(make_recipe: Any, tmp_path: Path) -> None:
    # The tiny model's own lm_head keeps logits near uniform whatever LoRA does inside; training the head
    # itself at lr 1.0 makes it confidently wrong (perplexity ~1e18) without overflowing to NaN.
    recipe = make_recipe(
        adapter={"modules_to_save": ["lm_head"]},
        data={"allow_contamination": True},
        train={"learning_rate": 1.0, "max_steps": 4, "warmup_ratio": 0.0, "lr_scheduler": "constant"},
        eval={"fail_if_worse": True},
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "finetune", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == EvaluationGateError.exit_code, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "evaluation gate" in errors[0] and "perplexity" in errors[0], result.stderr[
        -2000:
    ]
    assert "Traceback" not in result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in ("metrics.json", "report.md", "report.html", "adapter/adapter_model.safetensors"):
        assert (run_dir / name).is_file(), f"missing {name}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["gate"]["enabled"] is True and metrics["gate"]["passed"] is False
    assert metrics["adapted"]["perplexity"] > 2 * metrics["base"]["perplexity"]
    assert "FAIL" in (run_dir / "report.md").read_text()
