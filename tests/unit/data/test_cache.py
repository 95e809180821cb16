"""The tokenized-data cache: reused for identical inputs, never for a changed tokenizer, data or option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, build_tiny_tokenizer

import pipeline.data.tokenize
from pipeline.config.loader import load_recipe
from pipeline.data.formatting import tokenize_conversation
from pipeline.data.tokenize import tokenize_records

RECORDS = [
    {"messages": m, "prompt_turns": 0, "location": f"x.jsonl:{i}"} for i, m in enumerate(CONVERSATIONS)
]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[int]:
    """Count the real tokenization passes, with the pipeline cache in a temporary folder."""
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))
    counter: list[int] = []
    original = pipeline.data.tokenize._build

    def counting(*args: Any, **kwargs: Any) -> Any:
        counter.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline.data.tokenize, "_build", counting)
    return counter


def test_second_run_reuses_the_cache(make_recipe: Any, builds: list[int], tmp_path: Path) -> None:
    recipe = load_recipe(str(make_recipe()))
    tokenizer = build_tiny_tokenizer()
    first = tokenize_records(RECORDS, tokenizer, recipe.train)
    second = tokenize_records(RECORDS, tokenizer, recipe.train)
    assert len(builds) == 1
    assert second["input_ids"] == first["input_ids"] and second["assistant_masks"] == first["assistant_masks"]
    entries = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()
    assert not [p for p in entries[0].parent.iterdir() if ".tmp" in p.name]  # written atomically


def test_a_changed_tokenizer_is_not_served_from_the_cache(make_recipe: Any, builds: list[int]) -> None:
    recipe = load_recipe(str(make_recipe()))
    tokenizer = build_tiny_tokenizer()
    before = tokenize_records(RECORDS, tokenizer, recipe.train)
    changed = build_tiny_tokenizer()
    changed.add_tokens(["json.dumps"])  # a new token: different ids for the same text
    after = tokenize_records(RECORDS, changed, recipe.train)
    assert len(builds) == 2
    assert after["input_ids"] != before["input_ids"]
    fresh = tokenize_conversation(changed, CONVERSATIONS[0], recipe.train.max_length)
    assert after[0]["input_ids"] == fresh["input_ids"]


@pytest.mark.parametrize("change", ["template", "data", "max_length", "loss_on"])
def test_any_other_input_invalidates_the_cache(make_recipe: Any, builds: list[int], change: str) -> None:
    recipe = load_recipe(str(make_recipe()))
    tokenizer = build_tiny_tokenizer()
    tokenize_records(RECORDS, tokenizer, recipe.train)
    records = RECORDS
    if change == "template":
        tokenizer.chat_template = tokenizer.chat_template.replace("<|im_end|>", "<|im_end|> ")
    elif change == "data":
        records = [*RECORDS[:-1], {**RECORDS[-1], "messages": CONVERSATIONS[0]}]
    else:
        value = {"max_length": 32} if change == "max_length" else {"loss_on": "all"}
        recipe = load_recipe(str(make_recipe(train=value)))
    tokenize_records(records, tokenizer, recipe.train)
    assert len(builds) == 2


def test_cache_can_be_switched_off(
    make_recipe: Any, builds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPELINE_DATA_CACHE", "0")
    recipe = load_recipe(str(make_recipe()))
    tokenizer = build_tiny_tokenizer()
    tokenize_records(RECORDS, tokenizer, recipe.train)
    tokenize_records(RECORDS, tokenizer, recipe.train)
    assert len(builds) == 2
