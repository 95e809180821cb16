"""Chat templates survive export: for every shipped template, the tokenizer read back from the GGUF renders the
recipes' own conversations (system prompt, multi-turn, tool calls where the template has them) into exactly the
token ids training made; the Modelfile's Go template gives the same prompt text for the families Ollama runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_model, build_tiny_tokenizer

from pipeline.data.formatting import tokenize_conversation
from pipeline.data.records import convert, detect_format
from pipeline.export.gguf_writer import write_gguf
from pipeline.export.ollama import detect_format as detect_family
from pipeline.export.ollama import go_text, jinja_text
from pipeline.export.verify import read_back

ROOT = Path(__file__).resolve().parents[3]
SYSTEM = "You are a concise assistant that explains the Python standard library."
TOOLS = {"chatml", "qwen"}  # the shipped templates with a tool format
NO_SYSTEM = {"mistral"}  # its template refuses a system turn


def _records(path: Path, count: int, system: str | None) -> list[dict[str, Any]]:
    """The first records of a recipe data file, converted as training converts them (system prompt added)."""
    lines = path.read_text(encoding="utf-8").splitlines()[:count]
    return [convert(record, detect_format(record), system) for record in map(json.loads, lines)]


def _conversations(name: str) -> list[dict[str, Any]]:
    system = None if name in NO_SYSTEM else SYSTEM
    records = _records(ROOT / "recipes" / "data" / "pydoc-qa" / "eval.jsonl", 3, system)
    if name in TOOLS:
        records += _records(ROOT / "recipes" / "data" / "tool-calls" / "eval.jsonl", 2, None)
    return records


@pytest.mark.parametrize("name", ["chatml", "llama3", "qwen", "gemma", "mistral", "phi3"])
def test_gguf_template_renders_the_recipes_conversations_as_training_did(name: str, tmp_path: Path) -> None:
    template = (ROOT / "recipes" / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
    tokenizer = build_tiny_tokenizer(template)
    path = tmp_path / f"{name}.gguf"
    write_gguf(build_tiny_model(len(tokenizer)), tokenizer, path, "f32", "tiny")
    _, read = read_back(path)
    assert read.chat_template == template
    records = _conversations(name)
    assert any(m["role"] == "system" for m in records[0]["messages"]) == (name not in NO_SYSTEM)
    assert all("tools" in r for r in records[3:]) and len(records) == (5 if name in TOOLS else 3)
    for record in records:
        trained = tokenize_conversation(
            tokenizer, record["messages"], 4096, "assistant", 0, record.get("tools")
        )
        exported = tokenize_conversation(read, record["messages"], 4096, "assistant", 0, record.get("tools"))
        assert exported["input_ids"] == trained["input_ids"]
        assert exported["assistant_masks"] == trained["assistant_masks"]


@pytest.mark.parametrize("name", ["chatml", "llama3", "qwen", "gemma", "phi3"])
def test_modelfile_template_gives_the_training_prompt_text(name: str) -> None:
    tokenizer = build_tiny_tokenizer(
        (ROOT / "recipes" / "templates" / f"{name}.jinja").read_text(encoding="utf-8")
    )
    fmt = detect_family(tokenizer, adds_bos=False, where=name)
    for record in _conversations(name)[:3]:  # Ollama's Go templates here carry no tool calls
        prompt = [m for m in record["messages"] if m["role"] != "assistant"][:2]
        assert go_text(fmt, prompt) == jinja_text(tokenizer, prompt)
