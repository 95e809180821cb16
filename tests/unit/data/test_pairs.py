"""Preference records: every accepted shape becomes prompt + chosen + rejected; bad ones name the field."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.data.pairs import check_stage_records, convert_pair, convert_unpaired, pair_parts
from pipeline.data.records import detect_format
from pipeline.errors import DataError

USER = {"role": "user", "content": "What does len do?"}
GOOD = {"role": "assistant", "content": "It counts items."}
BAD = {"role": "assistant", "content": "It sorts items."}


@pytest.mark.parametrize(
    "record",
    [
        {"prompt": "What does len do?", "chosen": "It counts items.", "rejected": "It sorts items."},
        {"prompt": [USER], "chosen": [GOOD], "rejected": [BAD]},
        {"chosen": [USER, GOOD], "rejected": [USER, BAD]},
        {"prompt": "What does len do?", "chosen": [GOOD], "rejected": "It sorts items."},
    ],
)
def test_every_shape_gives_the_same_pair(record: dict[str, Any]) -> None:
    assert detect_format(record) == "preference"
    prompt, chosen, rejected = pair_parts(convert_pair(record))
    assert (prompt, chosen, rejected) == ([USER], [GOOD], [BAD])


def test_shared_prefix_of_multi_turn_conversations_is_the_prompt() -> None:
    earlier = [USER, GOOD, {"role": "user", "content": "And sorted?"}]
    record = {
        "chosen": [*earlier, {"role": "assistant", "content": "It returns a new sorted list."}],
        "rejected": [*earlier, {"role": "assistant", "content": "It counts items."}],
    }
    prompt, chosen, rejected = pair_parts(convert_pair(record))
    assert prompt == earlier and chosen[0]["content"].startswith("It returns") and rejected == [GOOD]


def test_system_prompt_goes_before_the_prompt_only() -> None:
    converted = convert_pair({"prompt": "q?", "chosen": "a", "rejected": "b"}, system_prompt="Be brief.")
    assert converted["messages"][0] == {"role": "system", "content": "Be brief."}
    assert converted["prompt_turns"] == 2 and converted["system_prompt"] is True
    assert converted["rejected"] == [{"role": "assistant", "content": "b"}]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": "q?", "chosen": "same", "rejected": "same "}, "chosen and rejected are identical"),
        ({"prompt": "q?", "chosen": "", "rejected": "b"}, "chosen is empty"),
        ({"prompt": "q?", "chosen": "a"}, "rejected is missing"),
        ({"prompt": [GOOD], "chosen": "a", "rejected": "b"}, "prompt must end with a user turn"),
        ({"chosen": [USER, GOOD], "rejected": [USER]}, "rejected has no answer after the shared prompt"),
        ({"prompt": "q?", "chosen": [{"role": "bot", "content": "a"}], "rejected": "b"}, "chosen[0].role"),
    ],
)
def test_bad_pairs_name_the_field(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        convert_pair(record)


STAGES_BY_KIND = {"pairs": ["dpo"], "labelled": ["kto"], "conversations": ["sft"], "prompts": ["grpo"]}


def check(stage: str, records: list[dict[str, Any]]) -> None:
    kind = {"dpo": "pairs", "kto": "labelled", "sft": "conversations"}[stage]
    check_stage_records(stage, kind, records, STAGES_BY_KIND)


def test_stage_and_records_must_agree() -> None:
    pair = {**convert_pair({"prompt": "q?", "chosen": "a", "rejected": "b"}), "location": "p.jsonl:3"}
    chat = {"messages": [USER, GOOD], "prompt_turns": 0, "location": "c.jsonl:7"}
    check("dpo", [pair])
    check("sft", [chat])
    labelled = {
        **convert_unpaired({"prompt": "q?", "completion": "a", "label": "True"}),
        "location": "k.csv:2",
    }
    assert labelled["label"] is True
    check("kto", [labelled])
    with pytest.raises(DataError, match=r"c\.jsonl:7: train\.stage is dpo, which trains on preference pairs"):
        check("dpo", [pair, chat])
    with pytest.raises(DataError, match=r"p\.jsonl:3: train\.stage is sft.*set train\.stage: dpo"):
        check("sft", [chat, pair])
    with pytest.raises(
        DataError, match=r"k\.csv:2: train\.stage is dpo.*labelled completions.*set train\.stage: kto"
    ):
        check("dpo", [labelled])
