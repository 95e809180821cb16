"""Each method (LoRA, DoRA, QLoRA, full) trains on the tiny model, passes the checks and merges.

rsLoRA only changes the scaling (tests/unit/models/test_adapters.py checks alpha/sqrt(r)), so LoRA uses it here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from pipeline.config.loader import RECIPES_DIR, load_recipe
from pipeline.models.merge import merge_run
from pipeline.models.probes import probe_batch, probe_logits
from pipeline.workflow import finetune

METHODS = {
    "lora": {"adapter": {"use_rslora": True}},
    "dora": {"adapter": {"use_dora": True}},
    # bitsandbytes 4-bit on CPU costs ~15x a LoRA step: two steps show it trains.
    "qlora": {"model": {"quantization": "4bit"}, "train": {"max_steps": 2}},
    "full": {"adapter": {"method": "full"}},
}


def _tensor_names(path: Path) -> list[str]:
    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())


@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_passes_checks_and_merges(method: str, make_recipe: Any, tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    sections = {key: dict(value) for key, value in METHODS[method].items()}
    sections.setdefault("eval", {})["enabled"] = False
    recipe = load_recipe(str(make_recipe(name=method, **sections)))
    result = finetune(recipe)

    checks = result.metrics["checks"]
    assert checks["passed"] and checks["files"]["problems"] == []
    assert (
        checks["reload"]["passed"]
        and checks["reload"]["relative_diff"] <= checks["reload"]["relative_tolerance"]
    )
    assert json.loads((result.run_dir / "checks.json").read_text())["passed"] is True
    adapter = result.run_dir / "adapter"
    if method == "full":
        assert (adapter / "model.safetensors").is_file() and not (adapter / "adapter_config.json").exists()
    else:
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["use_rslora"] is (method == "lora") and config["use_dora"] is (method == "dora")
        names = _tensor_names(adapter / "adapter_model.safetensors")
        assert all("lora_" in n for n in names)
        assert any("lora_magnitude_vector" in n for n in names) is (method == "dora")
        assert ("DoRA" in " ".join(checks["warnings"])) is (method == "dora")

    merged = merge_run(str(result.run_dir))
    assert merged.output == result.run_dir / "merged" and merged.relative_diff <= 1e-4
    assert merged.dequantized_from == ("4bit" if method == "qlora" else None)
    files = {p.name for p in merged.output.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= files
    assert (
        "chat_template.jinja" in files
        or "chat_template" in (merged.output / "tokenizer_config.json").read_text()
    )
    assert "adapter_config.json" not in files
    config = json.loads((merged.output / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"

    # Independent of merge's own check: the plain-transformers load differs from the untouched base.
    model = AutoModelForCausalLM.from_pretrained(merged.output)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    from transformers import AutoTokenizer

    batch = probe_batch(AutoTokenizer.from_pretrained(merged.output))
    moved = (probe_logits(model, batch) - probe_logits(base, batch)).abs().max()
    assert moved > 1e-3, "training left the model unchanged"


def test_shipped_method_recipes_set_their_method() -> None:
    qlora, dora, full = (load_recipe(name) for name in ("qlora-small", "dora-small", "full-small"))
    assert (
        qlora.model.quantization == "4bit"
        and qlora.model.bnb_4bit_quant_type == "nf4"
        and qlora.model.double_quant
    )
    assert qlora.model.dtype == "float32"  # the 4-bit compute dtype that works on CPU
    assert dora.adapter.use_dora and full.adapter.method == "full"
    assert full.train.learning_rate < dora.train.learning_rate


@pytest.mark.slow
def test_qlora_small_on_smollm2_through_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    overrides = ["train.max_steps=1", "train.batch_size=2", "train.max_length=128", "train.warmup_ratio=0",
                 f"train.output_dir={tmp_path}", "train.report_to=[none]", "data.max_examples=16",
                 "eval.max_examples=2", "eval.generate_examples=0", "eval.batch_size=2"]  # fmt: skip
    done = _cli(["finetune", "qlora-small", *overrides], env)
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    checks = json.loads((run_dir / "checks.json").read_text())
    assert checks["passed"] and checks["reload"]["relative_diff"] <= checks["reload"]["relative_tolerance"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 1 and metrics["checks"]["passed"], done.stdout[-2000:]
    with safe_open(str(run_dir / "adapter" / "adapter_model.safetensors"), "pt") as handle:
        lora_b = [handle.get_tensor(n) for n in handle.keys() if "lora_B" in n]  # noqa: SIM118
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b), "the one QLoRA step did not move the adapter"

    merged = _cli(["merge", str(run_dir), "--dtype", "bfloat16"], env)
    assert f"{run_dir / 'merged'}: merged (bfloat16)" in merged.stdout
    report = json.loads((run_dir / "merge.json").read_text())
    assert report["dequantized_from"] == "4bit" and report["relative_diff"] <= 1e-4
    config = json.loads((run_dir / "merged" / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"
    with safe_open(str(run_dir / "merged" / "model.safetensors"), "pt") as handle:
        assert {handle.get_tensor(n).dtype for n in handle.keys()} == {torch.bfloat16}  # noqa: SIM118


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=RECIPES_DIR.parent)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done
