"""`pipeline data audit`: highlighted masks, statistics, and errors for masks that would train badly."""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import pytest
from conftest import CONVERSATIONS, build_tiny_tokenizer, write_jsonl
from rich.console import Console
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.config.loader import load_recipe
from pipeline.data.audit import audit, check_example, compute_stats, special_ids
from pipeline.data.tokenize import tokenize_records
from pipeline.errors import DataError

NO_END_TOKEN = (  # an Alpaca-style text template: assistant turns end with a newline, no special token
    "{% for m in messages %}{% if m['role'] == 'user' %}### Question: {{ m['content'] }}\n"
    "{% else %}### Answer: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### Answer: {% endif %}"
)


def _trained_text(page: str) -> str:
    """The text of the highlighted (trained) tokens of an audit page, joined."""
    return "".join(part.split("</span>")[0] for part in page.split('<span class="t">')[1:])


@pytest.fixture(autouse=True)
def _private_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tiny-model tests cache tokenized data in tmp; the slow test keeps the shared cache (SmolLM2)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path / "cache"))


def test_cli_audit_highlights_trained_tokens_and_prints_statistics(make_recipe: Any, tmp_path: Path) -> None:
    html = tmp_path / "audit.html"
    result = CliRunner().invoke(app, ["data", "audit", str(make_recipe()), "-n", "2", "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "train: 24 examples" in result.output and "trained (" in result.output
    assert "length (tokens, before truncation): p50=" in result.output
    assert "truncated at max_length=64:" in result.output and "masks OK" in result.output
    page = html.read_text(encoding="utf-8")
    assert '<span class="t">' in page and '<span class="u">' in page
    trained = _trained_text(page)
    assert "It serializes an object to a JSON string.&lt;|im_end|&gt;" in trained
    assert "What does json.dumps do?" not in trained


def test_statistics_count_truncation_and_lost_trained_tokens(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(train={"max_length": 30})))
    records = [{"messages": m, "prompt_turns": 0, "location": f"r:{i}"} for i, m in enumerate(CONVERSATIONS)]
    tokenizer = build_tiny_tokenizer()
    dataset = tokenize_records(records, tokenizer, recipe.train, keep_untrained=True)
    stats = compute_stats(dataset, 30)
    lengths = dataset["num_tokens"]
    assert stats.examples == 4 and stats.truncated == sum(n > 30 for n in lengths) > 0
    assert stats.tokens == sum(min(n, 30) for n in lengths)
    assert stats.trained_tokens_lost == sum(dataset["num_trained"]) - stats.trained_tokens > 0
    assert stats.length_percentiles[100] == max(lengths)


def test_audit_stops_when_an_example_trains_on_zero_tokens(make_recipe: Any) -> None:
    recipe = load_recipe(str(make_recipe(train={"max_length": 8})))
    with pytest.raises(
        DataError,
        match=r"train.jsonl:1: this example would train on zero tokens \(its trained tokens all lie past "
        r"train.max_length=8; raise train.max_length\)",
    ):
        audit(recipe, 1, "train", None, Console(file=io.StringIO()))


def test_audit_stops_when_the_template_has_no_end_of_turn_token(make_recipe: Any, tmp_path: Path) -> None:
    template = tmp_path / "no-eot.jinja"
    template.write_text(NO_END_TOKEN, encoding="utf-8")
    recipe = load_recipe(str(make_recipe(model={"chat_template": str(template)})))
    with pytest.raises(
        DataError,
        match=r"train.jsonl:1: a trained assistant turn .* ends without a trained "
        r"end-of-turn/EOS token",
    ):
        audit(recipe, 1, "train", tmp_path / "a.html", Console(file=io.StringIO()))
    assert (tmp_path / "a.html").is_file()  # the page is written first, to inspect the problem


def test_untrained_eos_is_reported_with_the_token_that_follows() -> None:
    from pipeline.data.formatting import tokenize_conversation

    tokenizer = build_tiny_tokenizer()
    row = tokenize_conversation(tokenizer, CONVERSATIONS[0], 64)
    eos_at = max(i for i, t in enumerate(row["input_ids"]) if t == tokenizer.eos_token_id)
    check_example({**row, "location": "ok"}, tokenizer, special_ids(tokenizer))  # the real mask passes
    broken = [0 if i >= eos_at else bit for i, bit in enumerate(row["assistant_masks"])]
    with pytest.raises(DataError, match=r"bad: .*\(next: '<\|im_end\|>'\)"):
        check_example(
            {**row, "assistant_masks": broken, "location": "bad"}, tokenizer, special_ids(tokenizer)
        )


@pytest.mark.slow
def test_default_recipe_audit_shows_correct_masks(tmp_path: Path) -> None:
    html = tmp_path / "default.html"
    result = CliRunner().invoke(app, ["data", "audit", "lora-small", "-n", "3", "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "masks OK" in result.output and "'<|im_end|>' is EOS" in result.output
    page = html.read_text(encoding="utf-8")
    trained = _trained_text(page)
    assert "&lt;|im_end|&gt;" in trained and "You are a concise assistant" not in trained


def test_finetune_writes_the_audit_page_into_the_run_folder(make_recipe: Any) -> None:
    from pipeline.workflow import finetune

    recipe = load_recipe(str(make_recipe(train={"max_steps": 1}, eval={"enabled": False})))
    page = (finetune(recipe).run_dir / "data-audit.html").read_text(encoding="utf-8")
    assert "train: 24 examples" in page
    assert "It serializes an object to a JSON string.&lt;|im_end|&gt;" in _trained_text(page)


def test_the_run_page_shows_the_tool_calling_counts_data_audit_prints(
    make_recipe: Any, tmp_path: Path
) -> None:
    from pipeline.data.audit import write_run_page
    from pipeline.train.inputs import prepare_inputs

    call = {"type": "function", "function": {"name": "lookup", "arguments": {"name": "json.dumps"}}}
    with_tools = [
        {"role": "user", "content": "What does json.dumps do?"},
        {"role": "assistant", "content": "", "tool_calls": [call, call]},
        {"role": "tool", "content": "Serialize obj to a JSON formatted str."},
        {"role": "tool", "content": "Serialize obj to a JSON formatted str."},
        {"role": "assistant", "content": "It serializes an object to a JSON string."},
    ]
    records = [{"messages": with_tools}] * 3 + [{"messages": m} for m in CONVERSATIONS]
    train = write_jsonl(tmp_path / "tools" / "train.jsonl", records)
    recipe = load_recipe(str(make_recipe(data={"train": str(train)}, model={"chat_template": "chatml"})))
    console = Console(file=io.StringIO(), width=400)
    audit(recipe, 0, "train", None, console)
    printed = [line for line in console.file.getvalue().splitlines() if line.startswith("tool calling")]
    assert printed == [
        "tool calling: 0 record(s) with tools, 3 tool-call turn(s) (6 call(s), trained), 6 tool output(s) "
        "(never trained), 0 assistant turn(s) marked train: false"
    ]
    inputs = prepare_inputs(recipe)
    assert inputs.hygiene["tools"] == {
        "records_with_tools": 0,
        "tool_call_turns": 3,
        "tool_calls": 6,
        "tool_outputs": 6,
        "untrained": 0,
    }
    path = tmp_path / "data-audit.html"
    write_run_page(
        path, inputs.train, inputs.tokenizer, recipe.train.max_length, tools=inputs.hygiene["tools"]
    )
    assert f"<li>{html.escape(printed[0])}</li>" in path.read_text(encoding="utf-8")
    write_run_page(path, inputs.train, inputs.tokenizer, recipe.train.max_length)
    assert "tool calling" not in path.read_text(encoding="utf-8")
