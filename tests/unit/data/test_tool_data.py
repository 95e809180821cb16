"""The bundled tool-calls data set: small, rebuilt byte for byte by its script, every record valid, and
rendered by the qwen template of tools-small with tool calls trained and tool outputs not."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_tokenizer

from pipeline.config.loader import load_recipe
from pipeline.config.templates import TEMPLATES_DIR
from pipeline.data.audit import tool_lines
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import encode_record

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "recipes" / "data" / "tool-calls"


def test_bundled_files_are_small_and_documented() -> None:
    sizes = {p.name: p.stat().st_size for p in DATA.iterdir()}
    assert set(sizes) == {"train.jsonl", "eval.jsonl", "README.md"}
    assert sum(sizes.values()) < 1_000_000
    card = (DATA / "README.md").read_text(encoding="utf-8")
    assert "Python Software Foundation License" in card and "scripts/build_tool_data.py" in card


@pytest.mark.skipif(sys.version_info[:3] != (3, 11, 7), reason="docstrings differ between Python versions")
def test_the_script_rebuilds_the_bundled_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = importlib.import_module("build_tool_data")
    monkeypatch.setattr(script, "OUT_DIR", tmp_path)
    script.main()
    for name in ("train.jsonl", "eval.jsonl", "README.md"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def _trained_and_not(tokenizer: Any, row: dict[str, Any]) -> tuple[str, str]:
    pairs = list(zip(row["input_ids"], row["assistant_masks"], strict=True))
    return tokenizer.decode([t for t, m in pairs if m]), tokenizer.decode([t for t, m in pairs if not m])


def test_every_record_validates_and_renders_with_the_recipe_template() -> None:
    recipe = load_recipe("tools-small")
    assert recipe.model.chat_template == "qwen"
    splits = load_splits(recipe.data)
    assert (len(splits.train), len(splits.eval)) == (512, 48)
    (line,) = tool_lines(splits.train)
    assert line.startswith("tool calling: 512 record(s) with tools, ")
    tokenizer = build_tiny_tokenizer((TEMPLATES_DIR / "qwen.jinja").read_text(encoding="utf-8"))
    for record in splits.train[:40] + splits.eval:
        row = encode_record(record, tokenizer, 10**6, recipe.train.loss_on)
        trained, untrained = _trained_and_not(tokenizer, row)
        calls = [m for m in record["messages"] if m.get("tool_calls")]
        outputs = [m["content"] for m in record["messages"] if m["role"] == "tool"]
        assert trained.count("<tool_call>") == sum(len(m["tool_calls"]) for m in calls)
        assert all(f'"name": "{c["function"]["name"]}"' in trained for m in calls for c in m["tool_calls"])
        assert "<tool_response>" in untrained if outputs else "<tool_response>" not in untrained
        assert "<tool_response>" not in trained and "# Tools" not in trained
        assert trained.endswith(record["messages"][-1]["content"] + "<|im_end|>\n")
