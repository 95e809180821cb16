"""The real CLI on the packaged SmolLM2-135M: a short lora-small run is the teacher, distill-small (its default
teacher, latest:lora-small) distils it into a fresh adapter, and the student-teacher divergence on the eval
answers falls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_dpo_smollm2 import _pipeline


@pytest.mark.slow
def test_distill_small_brings_the_student_closer_to_a_lora_small_teacher(tmp_path: Path) -> None:
    missing = _pipeline("validate", "distill-small", f"train.output_dir={tmp_path}")
    assert missing.returncode != 0
    assert "`pipeline finetune lora-small`" in missing.stderr and "Traceback" not in missing.stderr
    common = [f"train.output_dir={tmp_path}", "eval.max_examples=16", "eval.generate_examples=0"]
    teacher = _pipeline("finetune", "lora-small", "train.max_steps=12", *common)
    assert teacher.returncode == 0, teacher.stderr[-3000:]
    result = _pipeline("finetune", "distill-small", "train.max_steps=12", "train.logging_steps=1", *common)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("distill-small-")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 12
    losses = [row["loss"] for row in metrics["train"]["log_history"] if "loss" in row]
    assert len(losses) == 12 and all(math.isfinite(loss) and loss >= 0 for loss in losses)
    base, adapted = metrics["base"]["distillation"], metrics["adapted"]["distillation"]
    assert base["tokens"] == adapted["tokens"] > 100
    assert adapted["kl"] < base["kl"], (base, adapted)  # the student moved towards its teacher
    card = (run_dir / "README.md").read_text()
    assert "distilled from `latest:lora-small`" in card
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
