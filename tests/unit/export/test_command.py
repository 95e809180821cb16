"""`pipeline export` on a tiny LoRA run: default paths, export.json, the Modelfile, atomic failure, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.errors import AssetError, RecipeError
from pipeline.export import verify
from pipeline.export.command import export_run
from pipeline.export.go_template import ollama_values, render

SYSTEM = "You answer questions about the Python standard library."


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A run folder whose adapter has non-zero LoRA weights (so merging changes the logits)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("export") / "tiny-run"
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(run / "adapter")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run / "adapter")
    recipe = {"model": {"name": str(tiny_model_dir), "dtype": "float32"}, "data": {"system_prompt": SYSTEM}}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return run


def test_gguf_export_writes_default_path_and_report(run_dir: Path) -> None:
    result = export_run(str(run_dir), "gguf", "q8_0")
    assert result.gguf == run_dir / "export" / "tiny-run-q8_0.gguf" and result.gguf.is_file()
    assert result.modelfile is None and result.check.passed
    report = json.loads((run_dir / "export" / "export.json").read_text())
    entry = report["exports"]["tiny-run-q8_0.gguf"]
    assert entry["dtype"] == "q8_0" and entry["check"]["passed"] and entry["tensor_types"]["Q8_0"] == 16
    assert entry["check"]["relative_diff"] == pytest.approx(result.check.relative_diff)
    assert 0 < entry["check"]["relative_diff"] <= verify.TOLERANCE["q8_0"]
    assert entry["merge_vs_base_plus_adapter"]["relative_diff"] < 1e-4  # the merge itself was checked
    assert [p.name for p in (run_dir / "export").iterdir() if p.name.startswith(".")] == []  # no temp files
    # The merged weights (not the base) went into the file: the base's logits are further away.
    from transformers import AutoModelForCausalLM

    from pipeline.models.probes import probe_batch, probe_logits

    back, tokenizer = verify.read_back(result.gguf)
    base = AutoModelForCausalLM.from_pretrained(
        yaml.safe_load((run_dir / "recipe.yaml").read_text())["model"]["name"]
    )
    batch = probe_batch(tokenizer)
    assert (
        probe_logits(back, batch) - probe_logits(base, batch)
    ).abs().max() > 10 * result.check.max_abs_diff

    second = export_run(str(run_dir), "gguf", "f16")  # a second dtype joins the same report
    report = json.loads((run_dir / "export" / "export.json").read_text())
    assert sorted(report["exports"]) == ["tiny-run-f16.gguf", "tiny-run-q8_0.gguf"] and second.check.passed


def test_ollama_export_writes_gguf_modelfile_and_report(run_dir: Path, tmp_path: Path) -> None:
    result = export_run(str(run_dir), "ollama", "f16", tmp_path / "ollama")
    folder = tmp_path / "ollama"
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "export.json", "ollama.gguf"]
    text = (folder / "Modelfile").read_text()
    assert text.startswith("FROM ./ollama.gguf\n") and f'SYSTEM """{SYSTEM}"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text and "PARAMETER num_ctx 512" in text
    assert result.chat_format == "chatml"
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    rendered = render(template, ollama_values([{"role": "user", "content": "Hi"}], SYSTEM))
    assert (
        rendered
        == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_failed_check_keeps_nothing(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(verify.TOLERANCE, "bf16", 0.0)  # bf16 rounding always moves the logits a little
    with pytest.raises(AssetError, match=r"logits read back differ by .* Nothing was kept"):
        export_run(str(run_dir), "gguf", "bf16", tmp_path / "out" / "x.gguf")
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(AssetError, match="Nothing was kept"):
        export_run(str(run_dir), "ollama", "bf16", tmp_path / "folder")
    assert not (tmp_path / "folder").exists() and list(tmp_path.iterdir()) == [tmp_path / "out"]


def test_cli_prints_the_measured_difference(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.gguf"
    result = CliRunner().invoke(app, ["export", str(run_dir), "--dtype", "f32", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{out}: f32" in result.output and "max |logit diff| 0.00e+00" in result.output
    assert "same token ids on" in result.output and f"report: {tmp_path / 'export.json'}" in result.output


def test_full_fine_tuning_run_and_plain_model_export(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "full-run"
    shutil.copytree(tiny_model_dir, run / "adapter")  # full fine-tuning keeps the whole model in adapter/
    (run / "recipe.yaml").write_text(
        yaml.safe_dump({"model": {"name": str(tiny_model_dir)}}), encoding="utf-8"
    )
    result = export_run(str(run), "gguf", "f32")
    assert result.gguf == run / "export" / "full-run-f32.gguf" and result.check.max_abs_diff == 0.0
    plain = export_run(str(tiny_model_dir), "gguf", "f16", tmp_path / "plain.gguf")
    assert plain.check.passed and json.loads((tmp_path / "export.json").read_text())["exports"]["plain.gguf"]
    with pytest.raises(RecipeError, match=r"--output .*model\.bin: a GGUF file name must end in \.gguf"):
        export_run(str(tiny_model_dir), "gguf", "f16", tmp_path / "model.bin")
