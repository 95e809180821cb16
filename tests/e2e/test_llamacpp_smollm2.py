"""llama.cpp itself on the packaged SmolLM2-135M: a 1-step lora-small run exported as a Q4_K_M GGUF (llama.cpp's
quantizer, importance matrix from the run's data) and as a LoRA GGUF on the f16 base, both scored by llama.cpp
on the run's eval split within the tolerances written in pipeline/export/engine_check.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.export.engine_check import TOLERANCE
from pipeline.export.llamacpp import ENV_VARIABLE, find_llamacpp_env

REQUIRED = os.environ.get("PIPELINE_REQUIRE_LLAMACPP") == "1"  # .ci/run: a missing env fails, never skips

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_llamacpp_env() is None and not REQUIRED,
        reason=f"llama.cpp's environment (.venv-llamacpp or ${ENV_VARIABLE}) is absent: build it with "
        "`make llamacpp-env` (.ci/run does, and sets PIPELINE_REQUIRE_LLAMACPP=1 so that CI cannot skip this)",
    ),
]


def _pipeline(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_q4_k_m_and_gguf_lora_are_scored_by_llama_cpp(tmp_path: Path) -> None:
    from pipeline.export.kquants import tensor_types

    _pipeline(
        "finetune", "lora-small", "train.max_steps=1", "eval.enabled=false", f"train.output_dir={tmp_path}"
    )
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("lora-small-")]

    printed = _pipeline("export", str(run), "--dtype", "q4_k_m")
    path = run / "export" / f"{run.name}-q4_k_m.gguf"
    assert "llama.cpp: perplexity" in printed and "on the eval split (24 records)" in printed
    entry = json.loads((run / "export" / "export.json").read_text())["exports"][path.name]
    check = entry["llama_cpp"]
    assert check["passed"] and check["perplexity_ratio_diff"] <= TOLERANCE["q4_k_m"][0]
    assert check["top1_agreement"] >= TOLERANCE["q4_k_m"][1] and check["token_ids_match"]
    assert entry["imatrix_tokens"] > 1000 and "Q4_K" in tensor_types(path)
    assert entry["bytes"] < 120 * 2**20  # 270 MB in f16

    printed = _pipeline("export", str(run), "--format", "gguf-lora")
    folder = run / "export" / f"{run.name}-f16-lora"
    entry = json.loads((folder / "export.json").read_text())["exports"][f"{run.name}-lora.gguf"]
    assert entry["llama_cpp"]["passed"] and entry["llama_cpp"]["perplexity_ratio_diff"] <= TOLERANCE["f16"][0]
    assert entry["bytes"] < 10 * 2**20 and entry["base"] == "SmolLM2-135M-Instruct-f16.gguf"
    modelfile = (folder / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./SmolLM2-135M-Instruct-f16.gguf\nADAPTER ./{run.name}-lora.gguf\n"), (
        modelfile
    )
