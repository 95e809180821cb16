"""llama.cpp itself (`make llamacpp-env`) loads, scores, quantizes and applies LoRA GGUFs of tiny runs; without
its environment the export says so in one line and falls back to transformers' reader."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import build_tiny_model, write_chat_files

from pipeline.errors import AssetError, PipelineError
from pipeline.export import engine_check
from pipeline.export.command import export_run
from pipeline.export.llamacpp import ENV_VARIABLE, find_llamacpp_env

REQUIRED = os.environ.get("PIPELINE_REQUIRE_LLAMACPP") == "1"  # .ci/run: a missing env fails, never skips
needs_llamacpp = pytest.mark.skipif(
    find_llamacpp_env() is None and not REQUIRED,
    reason=f"llama.cpp's environment (.venv-llamacpp or ${ENV_VARIABLE}) is absent: build it with "
    "`make llamacpp-env` (.ci/run does, and sets PIPELINE_REQUIRE_LLAMACPP=1 so that CI cannot skip these)",
)
SYSTEM = "You answer questions about the Python standard library."


def _run(folder: Path, tiny_tokenizer: Any, hidden: int, lora: dict[str, Any]) -> Path:
    """A run folder: a tiny base model of width hidden, a LoRA adapter with non-zero B, a recipe with data."""
    import torch
    from peft import LoraConfig, get_peft_model

    base_dir, run = folder / "base", folder / "tiny-run"
    model = build_tiny_model(len(tiny_tokenizer), seed=3, hidden_size=hidden)
    model.generation_config.eos_token_id = tiny_tokenizer.eos_token_id
    model.save_pretrained(base_dir)
    tiny_tokenizer.save_pretrained(base_dir)
    torch.manual_seed(0)
    config = LoraConfig(
        target_modules=["q_proj", "k_proj", "v_proj", "down_proj"], init_lora_weights=False, **lora
    )
    get_peft_model(model, config).save_pretrained(run / "adapter")
    tiny_tokenizer.save_pretrained(run / "adapter")
    train, evaluation = write_chat_files(folder / "data")
    recipe = {
        "model": {"name": str(base_dir), "dtype": "float32"},
        "data": {
            "train": str(train),
            "eval": str(evaluation),
            "system_prompt": SYSTEM,
            "allow_contamination": True,
        },
    }
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    return _run(tmp_path_factory.mktemp("llamacpp"), tiny_tokenizer, 32, {"r": 4, "lora_alpha": 8})


@needs_llamacpp
def test_f16_export_is_scored_by_llama_cpp_on_the_eval_split(run_dir: Path) -> None:
    result = export_run(str(run_dir), "gguf", "f16")
    verdict = result.engine
    assert verdict is not None and verdict.passed and result.check is not None and result.check.passed
    assert verdict.data == "eval split (4 records)" and verdict.positions > 50
    # f16 weights: llama.cpp's perplexity within a fraction of a percent of the merged fp32 model's.
    assert verdict.perplexity_ratio_diff < 2e-3 and verdict.top1_agreement >= 0.98
    assert verdict.greedy_same == verdict.greedy_prompts == 3 and verdict.token_ids_match
    entry = json.loads(result.report.read_text())["exports"][result.gguf.name]
    assert entry["llama_cpp"]["passed"] and entry["llama_cpp"]["engine"].startswith(
        "llama.cpp (llama-cpp-python 0.3."
    )
    assert entry["llama_cpp"]["perplexity"] == pytest.approx(verdict.perplexity)


@needs_llamacpp
def test_a_file_llama_cpp_scores_outside_tolerance_is_not_kept(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "x.gguf"
    export_run(str(run_dir), "gguf", "bf16", good)
    before = good.read_bytes()
    monkeypatch.setitem(engine_check.TOLERANCE, "bf16", (0.0, 1.0))  # bf16 always moves perplexity a little
    with pytest.raises(AssetError, match=r"x\.gguf: run by llama.cpp, perplexity .* Nothing was kept"):
        export_run(str(run_dir), "gguf", "bf16", good)
    assert good.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "export.json",
        "x.gguf",
    ]


@needs_llamacpp
def test_k_quant_by_llama_cpp_with_an_importance_matrix(
    tmp_path: Path, tiny_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.export.kquants import tensor_types

    # A random model's next-token distribution is nearly flat (perplexity ~ its vocabulary), so its most likely
    # token flips under any rounding: only perplexity is held to the tolerance measured on SmolLM2 here.
    monkeypatch.setitem(engine_check.TOLERANCE, "q4_k_m", (engine_check.TOLERANCE["q4_k_m"][0], 0.0))
    run = _run(tmp_path, tiny_tokenizer, 256, {"r": 4, "lora_alpha": 8})  # rows of 256: whole k-quant blocks
    result = export_run(str(run), "gguf", "q4_k_m")
    types = tensor_types(result.gguf)
    assert types.get("Q4_K", 0) >= 8 and "Q6_K" in types  # llama.cpp's Q4_K_M mix: some tensors at 6 bits
    f16 = export_run(str(run), "gguf", "f16")
    assert result.bytes < 0.4 * f16.bytes
    entry = json.loads(result.report.read_text())["exports"][result.gguf.name]
    assert entry["imatrix_tokens"] > 500 and entry["check"] is None and entry["llama_cpp"]["passed"]
    verdict = result.engine
    assert verdict is not None and verdict.perplexity_ratio_diff > f16.engine.perplexity_ratio_diff  # type: ignore[union-attr]


@needs_llamacpp
def test_gguf_lora_is_applied_by_llama_cpp_on_the_base(tmp_path: Path, tiny_tokenizer: Any) -> None:
    # rsLoRA and an alpha_pattern: per-module scalings that llama.cpp's single alpha cannot say alone.
    run = _run(
        tmp_path,
        tiny_tokenizer,
        32,
        {"r": 4, "lora_alpha": 8, "use_rslora": True, "alpha_pattern": {"v_proj": 2}},
    )
    result = export_run(str(run), "gguf-lora", "f32")
    folder = run / "export" / "tiny-run-f32-lora"
    assert sorted(p.name for p in folder.iterdir()) == [
        "Modelfile",
        "base-f32.gguf",
        "export.json",
        "tiny-run-lora.gguf",
    ]
    assert result.adapter == folder / "tiny-run-lora.gguf" and result.gguf == folder / "base-f32.gguf"
    verdict = result.engine
    assert verdict is not None and verdict.perplexity_ratio_diff < 1e-4 and verdict.top1_agreement >= 0.98
    modelfile = (folder / "Modelfile").read_text()
    assert (
        modelfile.startswith("FROM ./base-f32.gguf\nADAPTER ./tiny-run-lora.gguf\n") and SYSTEM in modelfile
    )
    # The base alone scores differently: the adapter, not the base, made the match.
    from pipeline.export.engine_check import check_gguf
    from pipeline.export.llamacpp import require_llamacpp_env
    from pipeline.export.reference import build_reference
    from pipeline.models.artifacts import resolve_target
    from pipeline.models.merge import merge_in_memory

    merged = merge_in_memory(str(run), fp32_reference=True)
    reference = build_reference(merged.model, merged.tokenizer, resolve_target(str(run)))
    alone = check_gguf(require_llamacpp_env("test"), folder / "base-f32.gguf", "f32", reference)
    assert alone.perplexity_ratio_diff > 100 * max(verdict.perplexity_ratio_diff, 1e-7)


def test_gguf_lora_refuses_what_llama_cpp_cannot_carry(tmp_path: Path, tiny_tokenizer: Any) -> None:
    run = _run(tmp_path, tiny_tokenizer, 32, {"r": 4, "lora_alpha": 8, "use_dora": True})
    with pytest.raises(AssetError, match=r"cannot carry DoRA \(use_dora\); export the merged model instead"):
        export_run(str(run), "gguf-lora", "f16")
    assert not (run / "export").exists()


def test_without_llama_cpp_the_export_says_so_and_k_quants_stop_first(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(
        PipelineError, match=r"--dtype q4_k_m \(llama.cpp's quantizer\) needs llama.cpp: .*make llamacpp-env"
    ):
        export_run(str(run_dir), "gguf", "q4_k_m", tmp_path / "q.gguf")
    result = export_run(str(run_dir), "gguf", "f16", tmp_path / "f.gguf")
    assert result.engine is None and result.check is not None and result.check.passed
    assert "llama.cpp check skipped: no llama.cpp environment at" in caplog.text
    entry = json.loads(result.report.read_text())["exports"]["f.gguf"]
    assert "make llamacpp-env" in entry["llama_cpp"]["skipped"]


@needs_llamacpp
def test_cli_prints_llama_cpp_verdict(run_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.app import app

    out = tmp_path / "cli.gguf"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--dtype", "q8_0", "--output", str(out)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("llama.cpp: perplexity"))
    assert "merged" in line and "on the eval split (4 records)" in line and "same greedy answer for" in line
