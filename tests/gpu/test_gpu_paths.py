"""GPU paths: bf16 LoRA, QLoRA 4-bit on CUDA, and a 2-process DDP launch. Skipped without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ROOT = Path(__file__).resolve().parents[3]


def test_bf16_lora_trains_on_the_gpu(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(model={"dtype": "bfloat16"}, train={"precision": "bf16"})))
    result = finetune(recipe)
    assert result.metrics["checks"]["passed"]
    assert result.metrics["adapted"]["perplexity"] > 1
    assert torch.cuda.get_device_name(0) in json.dumps(result.metrics["train"]["hardware"])


def test_qlora_4bit_on_cuda(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(model={"quantization": "4bit"}, train={"max_steps": 2})))
    result = finetune(recipe)
    assert result.metrics["checks"]["passed"]
    assert result.metrics["train"]["steps"] == 2


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_process_ddp_launch(make_recipe: Any) -> None:
    recipe = make_recipe(train={"batch_size": 2})
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ROOT / "recipes/accelerate/ddp.yaml"),
        "--num_processes",
        "2",
        "-m",
        "pipeline",
        "finetune",
        str(recipe),
    ]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics_file,) = Path(recipe).parent.glob("runs/*/metrics.json")
    assert json.loads(metrics_file.read_text())["train"]["world_size"] == 2
