"""model.chat_template by name: shipped templates load by name, unknown names and template-less base models
list the names, and recipe settings that make every record fail are named instead of train.jsonl:1."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import build_tiny_tokenizer, write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.config.schema import ModelSpec
from pipeline.config.templates import TEMPLATES_DIR, template_names
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import AssetError, DataError, RecipeError
from pipeline.models.loading import load_tokenizer

NAMES = "chatml, gemma, llama3, mistral, phi3, qwen"


def test_shipped_templates_are_named() -> None:
    assert ", ".join(template_names()) == NAMES


@pytest.mark.parametrize("name", ["chatml", "qwen", "gemma"])
def test_a_name_loads_the_shipped_file(name: str, tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(ModelSpec(name=str(tiny_model_dir), chat_template=name))
    assert tokenizer.chat_template == (TEMPLATES_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def test_a_path_still_works_and_a_name_stays_a_name(make_recipe: Any) -> None:
    by_path = load_recipe(str(make_recipe(model={"chat_template": str(TEMPLATES_DIR / "phi3.jinja")})))
    assert by_path.model.chat_template == str(TEMPLATES_DIR / "phi3.jinja")
    by_name = load_recipe(str(make_recipe(model={"chat_template": "phi3"})))
    assert by_name.model.chat_template == "phi3"


def test_unknown_name_lists_the_shipped_ones(make_recipe: Any) -> None:
    with pytest.raises(RecipeError) as error:
        load_recipe(str(make_recipe(model={"chat_template": "chatlm"})))
    message = str(error.value)
    assert "model.chat_template: unknown chat template 'chatlm'" in message
    assert f"set model.chat_template to one of {NAMES} or to a .jinja file" in message
    assert "\n" not in message


def test_base_model_without_template_lists_the_names(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "base"
    folder.mkdir()
    shutil.copy(tiny_model_dir / "config.json", folder / "config.json")
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    with pytest.raises(AssetError) as error:
        load_tokenizer(ModelSpec(name=str(folder)))
    assert str(error.value) == (
        f"{folder}: the tokenizer has no chat template (a base model?); set model.chat_template to one of "
        f"{NAMES} or to a .jinja file."
    )
    assert load_tokenizer(ModelSpec(name=str(folder), chat_template="chatml")).chat_template


def _tokenize(recipe_path: Path) -> None:
    recipe = load_recipe(str(recipe_path))
    tokenize_records(load_splits(recipe.data).train, load_tokenizer(recipe.model), recipe.train)


def test_system_prompt_the_template_refuses_names_data_system_prompt(make_recipe: Any) -> None:
    path = make_recipe(model={"chat_template": "mistral"}, data={"system_prompt": "Answer briefly."})
    with pytest.raises(RecipeError) as error:
        _tokenize(path)
    assert str(error.value).startswith(
        "data.system_prompt: the chat template of 'mistral' does not accept a system turn ("
    )
    assert "remove data.system_prompt" in str(error.value) and "jsonl" not in str(error.value)


def test_template_that_renders_nothing_names_model_chat_template(make_recipe: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jinja"
    broken.write_text("{{ raise_exception('no chat here') }}", encoding="utf-8")
    with pytest.raises(RecipeError) as error:
        _tokenize(make_recipe(model={"chat_template": str(broken)}))
    message = str(error.value)
    assert message.startswith("model.chat_template: the chat template of ")
    assert "cannot render a plain user/assistant conversation" in message and "no chat here" in message
    assert "jsonl" not in message


def test_a_records_own_bad_turns_still_blame_the_record(make_recipe: Any, tmp_path: Path) -> None:
    data = write_jsonl(
        tmp_path / "d" / "train.jsonl",
        [
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            {
                "messages": [
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                    {"role": "assistant", "content": "d"},
                ]
            },
        ],
    )
    path = make_recipe(
        model={"chat_template": "mistral"}, data={"train": str(data), "eval_size": 0, "eval": []}
    )
    with pytest.raises(DataError, match=r"train\.jsonl:2: the chat template cannot render this conversation"):
        _tokenize(path)
