"""The real CLI on the packaged SmolLM2-135M: a 1-step lora-small run exported to GGUF and to Ollama."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _pipeline(*argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_lora_small_exports_to_gguf_and_ollama(tmp_path: Path) -> None:
    import gguf
    from transformers import AutoTokenizer

    from pipeline.export.go_template import ollama_values, render
    from pipeline.export.verify import TOLERANCE, read_back, sample_texts

    _pipeline(
        "finetune", "lora-small", "train.max_steps=1", "eval.enabled=false", f"train.output_dir={tmp_path}"
    )
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith("lora-small-")]

    printed = _pipeline("export", str(run), "--dtype", "q8_0").stdout
    path = run / "export" / f"{run.name}-q8_0.gguf"
    assert f"{path}: q8_0" in printed and "same next token at" in printed
    entry = json.loads((run / "export" / "export.json").read_text())["exports"][path.name]
    check = entry["check"]
    assert check["passed"] and check["relative_diff"] <= TOLERANCE["q8_0"] and check["top1_agreement"] >= 0.95
    assert entry["merge_vs_base_plus_adapter"]["relative_diff"] < 1e-4  # fp32 merge vs fp32 base + adapter
    fields = {name: field.contents() for name, field in gguf.GGUFReader(str(path)).fields.items()}
    assert fields["general.architecture"] == "llama" and fields["llama.block_count"] == 30
    assert len(fields["tokenizer.ggml.tokens"]) == 49152 and fields["tokenizer.ggml.eos_token_id"] == 2

    run_tokenizer = AutoTokenizer.from_pretrained(run / "adapter")
    _, read_tokenizer = read_back(path)
    for text in sample_texts(run_tokenizer):
        assert read_tokenizer(text)["input_ids"] == run_tokenizer(text)["input_ids"]
    assert read_tokenizer.chat_template == run_tokenizer.chat_template

    _pipeline("export", str(run), "--format", "ollama", "--dtype", "f16")
    folder = run / "export" / f"{run.name}-f16-ollama"
    modelfile = (folder / "Modelfile").read_text()
    assert (
        modelfile.startswith(f"FROM ./{run.name}-f16.gguf\n") and (folder / f"{run.name}-f16.gguf").is_file()
    )
    system = yaml.safe_load((run / "recipe.yaml").read_text())["data"]["system_prompt"]
    assert f'SYSTEM """{system}"""' in modelfile
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    history = [
        {"role": "user", "content": "What does json.dumps do?"},
        {"role": "assistant", "content": "It serializes an object to a JSON string."},
        {"role": "user", "content": "And json.loads?"},
    ]
    trained = run_tokenizer.apply_chat_template(
        [{"role": "system", "content": system}, *history], tokenize=False, add_generation_prompt=True
    )
    assert render(template, ollama_values(history, system)) == trained
    f16 = json.loads((folder / "export.json").read_text())["exports"][f"{run.name}-f16.gguf"]["check"]
    assert f16["passed"] and f16["relative_diff"] <= TOLERANCE["f16"] and f16["top1_agreement"] == 1.0
