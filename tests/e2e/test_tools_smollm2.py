"""The real CLI on the packaged SmolLM2-135M: two steps of tools-small (tool-calling data, qwen template)."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_tools_small_two_steps(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "finetune",
        "tools-small",
        "train.max_steps=2",
        "eval.enabled=false",
        f"train.output_dir={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("tools-small-")]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    template = (Path(__file__).resolve().parents[2] / "recipes" / "templates" / "qwen.jinja").read_text()
    assert (run_dir / "adapter" / "chat_template.jinja").read_text() == template
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["recipe"]["model"]["chat_template"] == "qwen"
    page = (run_dir / "data-audit.html").read_text(encoding="utf-8")
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # the tokens' text without their highlight spans
    assert '<tool_call>\n{"name": "' in text and "<tool_response>" in text


@pytest.mark.slow
def test_smollm2_own_template_refuses_tool_records_naming_the_setting(tmp_path: Path) -> None:
    from pipeline.config.loader import load_recipe
    from pipeline.data.splits import load_splits
    from pipeline.data.tokenize import tokenize_records
    from pipeline.errors import RecipeError
    from pipeline.models.loading import load_tokenizer

    recipe = load_recipe("tools-small", ["model.chat_template=null", "data.max_examples=4"])
    tokenizer = load_tokenizer(recipe.model)  # SmolLM2's template: ChatML without tools or tool_calls
    with pytest.raises(RecipeError) as error:
        tokenize_records(load_splits(recipe.data).train, tokenizer, recipe.train)
    assert str(error.value).startswith(
        "model.chat_template: the chat template of HuggingFaceTB/SmolLM2-135M-Instruct cannot render tool "
        "calls and tool outputs ("
    )
    assert "set model.chat_template: qwen or chatml" in str(error.value)
