"""Tool calling: records with tool calls, tool outputs and tools validate with the bad field named, render
through the shipped templates, and train exactly the tool-call turns and final answers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import CHATML, build_tiny_tokenizer, write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.data.audit import tool_lines
from pipeline.data.formatting import TemplateMismatch
from pipeline.data.records import convert
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import encode_record, tokenize_records
from pipeline.errors import RecipeError
from pipeline.models.loading import load_tokenizer

TEMPLATES = Path(__file__).resolve().parents[3] / "recipes" / "templates"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "math_gcd",
            "description": "Greatest common divisor of the integer arguments.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    }
]
MESSAGES = [
    {"role": "user", "content": "What is the gcd of 84 and 36?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "math_gcd", "arguments": '{"a": 84, "b": 36}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "math_gcd", "content": "12"},
    {"role": "assistant", "content": "The greatest common divisor is 12."},
    {"role": "user", "content": "And of 10 and 4?"},
    {"role": "assistant", "content": "It is 2.", "train": False},
]
RECORD = {"messages": MESSAGES, "tools": TOOLS}
# What each shipped template renders for the tool-call turn, up to and including its end-of-turn token.
CALL_TURN = {
    "qwen": '<tool_call>\n{"name": "math_gcd", "arguments": {"a": 84, "b": 36}}\n</tool_call><|im_end|>\n',
    "chatml": '<tool_call>{"name": "math_gcd", "arguments": {"a": 84, "b": 36}}</tool_call><|im_end|>\n',
}
ANSWER_TURN = "The greatest common divisor is 12.<|im_end|>\n"


def tokenizer_with(name: str) -> Any:
    """The tiny ChatML tokenizer with a shipped template."""
    return build_tiny_tokenizer((TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8"))


def test_tool_record_converts_to_clean_messages() -> None:
    record = convert(copy.deepcopy(RECORD), "messages")
    call_turn = record["messages"][1]
    assert call_turn["content"] == ""  # null content on a tool-call turn
    assert call_turn["tool_calls"] == [
        {
            "type": "function",
            "function": {"name": "math_gcd", "arguments": {"a": 84, "b": 36}},
            "id": "call_1",
        }
    ]
    assert record["messages"][2] == {
        "role": "tool",
        "content": "12",
        "tool_call_id": "call_1",
        "name": "math_gcd",
    }
    assert record["messages"][5] == {"role": "assistant", "content": "It is 2.", "train": False}
    assert "train" not in record["messages"][3]
    assert record["tools"] == TOOLS


def _with(path: str, value: Any) -> dict[str, Any]:
    """RECORD with the value at a dotted path (messages.1.tool_calls.0.function.name) replaced."""
    record = copy.deepcopy(RECORD)
    *parents, leaf = path.split(".")
    node: Any = record
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[int(leaf) if leaf.isdigit() else leaf]
    else:
        node[int(leaf) if leaf.isdigit() else leaf] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("messages.1.tool_calls", {"name": "x"}, "messages[1].tool_calls must be a non-empty list"),
        ("messages.1.tool_calls.0.type", "code", "messages[1].tool_calls[0].type must be 'function'"),
        (
            "messages.1.tool_calls.0.function",
            "math_gcd",
            "messages[1].tool_calls[0].function must be an object",
        ),
        (
            "messages.1.tool_calls.0.function.name",
            "",
            "messages[1].tool_calls[0].function.name must be a function",
        ),
        (
            "messages.1.tool_calls.0.function.arguments",
            '{"a": 84,',
            "messages[1].tool_calls[0].function.arguments is not valid JSON",
        ),
        (
            "messages.1.tool_calls.0.function.arguments",
            "[84, 36]",
            "messages[1].tool_calls[0].function.arguments must be a JSON object of argument values (got list)",
        ),
        (
            "messages.1.tool_calls.0.function.name",
            "math_lcm",
            "messages[1].tool_calls[0].function.name 'math_lcm' is not among the record's tools (math_gcd)",
        ),
        ("messages.0.tool_calls", TOOLS, "messages[0].tool_calls are allowed on assistant turns only"),
        (
            "messages.2.content",
            {"gcd": 12},
            "messages[2].content must be a string, the tool's output (got dict)",
        ),
        (
            "messages.2.tool_call_id",
            "call_9",
            "messages[2].tool_call_id 'call_9' matches no call of messages[1]",
        ),
        ("messages.1", _DELETE, "messages[1] is a tool output with no assistant tool call before it"),
        ("messages.5.train", "no", "messages[5].train must be true or false (got 'no')"),
        ("messages.4.train", False, "messages[4].train applies to assistant turns only"),
        ("tools", {"name": "math_gcd"}, "tools must be a non-empty list"),
        ("tools.0.function.parameters", "ints", "tools[0].function.parameters must be a JSON schema object"),
        ("tools.0.type", "retrieval", "tools[0].type must be 'function' (got 'retrieval')"),
    ],
)
def test_bad_tool_fields_are_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(_with(path, value), "messages")


def test_every_turn_untrained_is_refused() -> None:
    record = {"messages": [MESSAGES[0], {"role": "assistant", "content": "x", "train": False}]}
    with pytest.raises(ValueError, match="every assistant turn is marked train: false"):
        convert(record, "messages")


def _trained_runs(tokenizer: Any, row: dict[str, Any]) -> list[str]:
    runs: list[list[int]] = []
    previous = 0
    for token, bit in zip(row["input_ids"], row["assistant_masks"], strict=True):
        if bit and not previous:
            runs.append([])
        if bit:
            runs[-1].append(token)
        previous = bit
    return [tokenizer.decode(run) for run in runs]


@pytest.mark.parametrize("name", sorted(CALL_TURN))
def test_loss_mask_token_by_token_on_a_tool_calling_conversation(name: str) -> None:
    tokenizer = tokenizer_with(name)
    record = convert(copy.deepcopy(RECORD), "messages")
    row = encode_record(record, tokenizer, 4096, "assistant")
    text = tokenizer.apply_chat_template(record["messages"], tools=record["tools"], tokenize=False)
    assert "math_gcd" in text[: text.index("What is the gcd")]  # the tools are listed before the question
    # Independently of the code under test: the characters that must carry the loss.
    trained_chars = [
        (text.index(CALL_TURN[name]), len(CALL_TURN[name])),
        (text.index(ANSWER_TURN), len(ANSWER_TURN)),
    ]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert row["input_ids"] == encoding["input_ids"]
    for index, (begin, end) in enumerate(encoding["offset_mapping"]):
        expected = any(start <= begin and end <= start + size for start, size in trained_chars)
        piece = text[begin:end]
        assert row["assistant_masks"][index] == int(expected), f"token {index} {piece!r}"
    assert _trained_runs(tokenizer, row) == [CALL_TURN[name], ANSWER_TURN]
    untrained = tokenizer.decode(
        [t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if not m]
    )
    assert "12" in untrained.split("What is the gcd")[1]  # the tool output
    assert "It is 2." in untrained  # the train: false turn


def test_default_chatml_without_tool_support_fails_naming_the_setting(tmp_path: Path) -> None:
    plain = build_tiny_tokenizer(CHATML)  # SmolLM2's template has the same shape: no tools, no tool_calls
    record = convert(copy.deepcopy(RECORD), "messages")
    with pytest.raises(TemplateMismatch, match="does not render the record's tools"):
        encode_record(record, plain, 4096, "assistant")
    train = load_recipe(str(_recipe(tmp_path))).train
    with pytest.raises(
        RecipeError, match=r"^model\.chat_template: the chat template of .* cannot render tool calls"
    ):
        tokenize_records([{**record, "location": "t.jsonl:1"}], plain, train, desc="tools")


def _recipe(tmp_path: Path, **model: Any) -> Path:
    data = write_jsonl(tmp_path / "tools.jsonl", [RECORD] * 4)
    path = tmp_path / "tools.yaml"
    path.write_text(
        json.dumps(
            {
                "model": {"name": "unused", **model},
                "data": {"train": str(data), "eval_size": 0},
                "train": {"max_length": 2048},  # the tiny tokenizer spends ~4 tokens per word
            }
        ),
        encoding="utf-8",
    )
    return path


def test_audit_counts_tool_calls(tmp_path: Path) -> None:
    records = load_splits(load_recipe(str(_recipe(tmp_path))).data).train
    assert tool_lines(records) == [
        "tool calling: 4 record(s) with tools, 4 tool-call turn(s) (4 call(s), trained), 4 tool output(s) "
        "(never trained), 4 assistant turn(s) marked train: false"
    ]
    assert tool_lines([{"messages": MESSAGES[:1]}]) == []


def test_tool_records_train_through_the_qwen_template_by_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = load_recipe(str(_recipe(tmp_path, chat_template="qwen")))
    recipe = recipe.model_copy(
        update={"model": recipe.model.model_copy(update={"name": str(tiny_model_dir)})}
    )
    tokenizer = load_tokenizer(recipe.model)
    assert tokenizer.chat_template == (TEMPLATES / "qwen.jinja").read_text(encoding="utf-8")
    dataset = tokenize_records(load_splits(recipe.data).train, tokenizer, recipe.train, desc="tools")
    assert len(dataset) == 4
    assert _trained_runs(tokenizer, dataset[0]) == [CALL_TURN["qwen"], ANSWER_TURN]


def _sharegpt(**changes: Any) -> dict[str, Any]:
    """The tool conversation in LLaMA-Factory's ShareGPT form (tools as a JSON string, bare schemas)."""
    turns = [
        {"from": "human", "value": "What is the gcd of 84 and 36?"},
        {"from": "function_call", "value": '{"name": "math_gcd", "arguments": {"a": 84, "b": 36}}'},
        {"from": "observation", "value": "12"},
        {"from": "gpt", "value": "The greatest common divisor is 12."},
        {"from": "human", "value": "And of 10 and 4?"},
        {"from": "gpt", "value": "It is 2.", "train": False},
    ]
    for index, turn in changes.items():
        turns[int(index.removeprefix("t"))] = turn
    return {"conversations": turns, "tools": json.dumps([TOOLS[0]["function"]])}


def test_sharegpt_function_calls_become_the_same_messages() -> None:
    openai = convert(copy.deepcopy(RECORD), "messages")
    sharegpt = convert(_sharegpt(), "sharegpt")
    assert sharegpt["tools"] == openai["tools"]
    strip = [{k: v for k, v in m.items() if k not in ("tool_call_id", "name")} for m in openai["messages"]]
    strip[1]["tool_calls"] = [{k: v for k, v in c.items() if k != "id"} for c in strip[1]["tool_calls"]]
    assert sharegpt["messages"] == strip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"t1": {"from": "function_call", "value": "gcd(84, 36)"}},
            "conversations[1].value must be a JSON object",
        ),
        (
            {"t1": {"from": "observation", "value": "12"}},
            "conversations[1] is a tool output with no assistant",
        ),
        (
            {"t2": {"from": "observation", "value": 12}},
            "conversations[2].value must be a string, the tool's output",
        ),
        (
            {"t0": {"from": "human", "value": "hi", "train": False}},
            "conversations[0].train applies to assistant",
        ),
    ],
)
def test_bad_sharegpt_tool_turns_are_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(_sharegpt(**changes), "sharegpt")
