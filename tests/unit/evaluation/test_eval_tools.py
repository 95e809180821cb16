"""Evaluation of tool-calling records: generation prompts offer the record's tools, as training rendered them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pipeline.config.schema import EvalSpec
from pipeline.data.records import convert
from pipeline.evaluation.runner import prepare_eval
from pipeline.inference.generation import render_prompts

TOOL_DATA = Path(__file__).resolve().parents[3] / "recipes" / "data" / "tool-calls" / "eval.jsonl"
QWEN = Path(__file__).resolve().parents[3] / "recipes" / "templates" / "qwen.jinja"


def test_generation_prompts_carry_the_records_tools(tiny_tokenizer: Any) -> None:
    tokenizer = copy.deepcopy(tiny_tokenizer)  # a session fixture: keep its own template
    tokenizer.chat_template = QWEN.read_text(encoding="utf-8")
    raw = json.loads(TOOL_DATA.read_text(encoding="utf-8").splitlines()[0])
    record = {**convert(raw, "messages"), "location": "eval.jsonl:1"}
    spec = EvalSpec(max_examples=1, generate_examples=1)
    data = prepare_eval([record], tokenizer, spec, max_length=1024, loss_on="assistant")
    assert data.prompt_tools == [record["tools"]]
    (prompt,) = render_prompts(tokenizer, data.prompts, data.prompt_tools)
    for tool in record["tools"]:
        assert tool["function"]["name"] in prompt  # the offered functions are in the system turn
    assert data.references == [raw["messages"][-1]["content"]]
    (plain,) = render_prompts(tokenizer, data.prompts)
    assert "math_gcd" not in plain.split("<|im_start|>user")[0]
