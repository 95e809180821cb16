"""Record formats: detection, conversion to messages, and one-line errors naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.data.records import convert, detect_format
from pipeline.data.splits import load_splits
from pipeline.errors import DataError

QA = [
    {"role": "user", "content": "What does json.dumps do?"},
    {"role": "assistant", "content": "It serializes an object."},
]


@pytest.mark.parametrize(
    ("record", "fmt"),
    [
        ({"messages": QA}, "messages"),
        (
            {
                "conversations": [
                    {"from": "human", "value": "What does json.dumps do?"},
                    {"from": "gpt", "value": "It serializes an object."},
                ]
            },
            "sharegpt",
        ),
        (
            {"instruction": "What does json.dumps do?", "input": "", "output": "It serializes an object."},
            "alpaca",
        ),
        (
            {"prompt": "What does json.dumps do?", "completion": "It serializes an object."},
            "prompt_completion",
        ),
    ],
)
def test_every_chat_format_becomes_the_same_messages(record: dict[str, Any], fmt: str) -> None:
    assert detect_format(record) == fmt
    assert convert(record, fmt)["messages"] == QA


def test_alpaca_input_and_system_and_text() -> None:
    record = {"instruction": "Summarize.", "input": "A long text.", "output": "Short.", "system": "Be brief."}
    assert convert(record, "alpaca")["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Summarize.\n\nA long text."},
        {"role": "assistant", "content": "Short."},
    ]
    assert convert({"text": "Plain prose."}, detect_format({"text": "Plain prose."})) == {
        "text": "Plain prose."
    }


def test_conversational_prompt_completion_marks_prompt_turns() -> None:
    record = {
        "prompt": [{"role": "system", "content": "S."}, *QA, {"role": "user", "content": "More?"}],
        "completion": [{"role": "assistant", "content": "No."}],
    }
    converted = convert(record, "prompt_completion")
    assert converted["prompt_turns"] == 4 and converted["messages"][-1] == {
        "role": "assistant",
        "content": "No.",
    }


def test_system_prompt_is_injected_only_where_missing() -> None:
    assert convert({"messages": QA}, "messages", "Be kind.")["messages"][0] == {
        "role": "system",
        "content": "Be kind.",
    }
    own = [{"role": "system", "content": "Own."}, *QA]
    assert convert({"messages": own}, "messages", "Be kind.")["messages"][0]["content"] == "Own."
    shifted = convert({"prompt": "Q?", "completion": "A."}, "prompt_completion", "Be kind.")
    assert shifted["prompt_turns"] == 2 and len(shifted["messages"]) == 3


@pytest.mark.parametrize(
    ("record", "fmt", "message"),
    [
        (
            {"messages": [*QA, {"role": "bot", "content": "x"}]},
            "messages",
            "messages[2].role must be one of user, assistant, system, tool (got 'bot')",
        ),
        (
            {"messages": [QA[0], {"role": "assistant", "content": "  "}]},
            "messages",
            "messages[1].content is empty",
        ),
        ({"messages": [QA[0]]}, "messages", "messages has no assistant turn to train on"),
        (
            {"messages": [*QA, {"role": "system", "content": "late"}]},
            "messages",
            "messages[2] is a system turn",
        ),
        (
            {"conversations": [{"from": "robot", "value": "x"}]},
            "sharegpt",
            "conversations[0].from must be one of human, gpt, system, function_call, observation (got 'robot')",
        ),
        ({"instruction": "Q", "output": ""}, "alpaca", "output is empty"),
        ({"prompt": "Q", "completion": 3}, "prompt_completion", "completion must be a string (got int)"),
        ({"text": "x"}, "messages", "no 'messages' field for format messages (fields: text)"),
    ],
)
def test_invalid_records_name_the_field(record: dict[str, Any], fmt: str, message: str) -> None:
    with pytest.raises(
        ValueError,
        match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
    ):
        convert(record, fmt)


def test_unknown_format_lists_the_fields() -> None:
    with pytest.raises(ValueError, match=r"cannot tell the record format.*\(got answer, question\)"):
        detect_format({"question": "Q", "answer": "A"})


def _bad_file(tmp_path: Path) -> Path:
    good = {"messages": QA}
    bad = {"messages": [*QA, {"role": "bot", "content": "hi"}]}
    return write_jsonl(tmp_path / "data" / "train.jsonl", [good] * 16 + [bad] + [good] * 3)


def test_bad_record_stops_the_run_with_file_and_line(make_recipe: Any, tmp_path: Path) -> None:
    path = _bad_file(tmp_path)
    recipe = load_recipe(str(make_recipe(data={"train": str(path), "eval": []})))
    with pytest.raises(DataError) as error:
        load_splits(recipe.data)
    assert str(error.value).startswith(
        f"{path}:17: messages[2].role must be one of user, assistant, system, tool (got 'bot'); "
    )
    assert "data.on_invalid: skip" in str(error.value) and "\n" not in str(error.value)


def test_skip_mode_counts_skipped_records(make_recipe: Any, tmp_path: Path) -> None:
    path = _bad_file(tmp_path)
    recipe = load_recipe(
        str(make_recipe(data={"train": str(path), "eval": [], "on_invalid": "skip", "eval_size": 0}))
    )
    splits = load_splits(recipe.data)
    assert len(splits.train) == 19 and splits.skipped == {str(path): 1}


def test_empty_data_set_is_an_error(make_recipe: Any, tmp_path: Path) -> None:
    path = tmp_path / "data" / "empty.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n", encoding="utf-8")
    recipe = load_recipe(str(make_recipe(data={"train": str(path), "eval": []})))
    with pytest.raises(DataError, match="no usable records"):
        load_splits(recipe.data)


def test_invalid_json_line_is_named(make_recipe: Any, tmp_path: Path) -> None:
    path = tmp_path / "data" / "broken.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"messages": QA}) + "\n{not json\n", encoding="utf-8")
    recipe = load_recipe(str(make_recipe(data={"train": str(path), "eval": []})))
    with pytest.raises(DataError, match=r"broken.jsonl:2: invalid JSON"):
        load_splits(recipe.data)
