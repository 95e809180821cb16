"""`pipeline generate`: prompt from the argument, a JSONL file (JSONL out) or stdin; assisted decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl
from typer.testing import CliRunner
from wordy_model import save_wordy_model

from pipeline.cli.app import app
from pipeline.errors import DataError
from pipeline.inference.generation import Sampling, generate

QUESTION = "What does json.dumps do?"
GREEDY = ["--greedy", "--max-new-tokens", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def wordy_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return save_wordy_model(tmp_path_factory.mktemp("wordy"), tiny_model_dir)


@pytest.fixture(scope="module")
def answer(wordy_dir: Path) -> Any:
    """Greedy answers of the wordy model, computed in-process, to compare the CLI against."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(wordy_dir),
        AutoTokenizer.from_pretrained(wordy_dir),
    )

    def _answer(messages: list[dict[str, str]]) -> str:
        return generate(model, tokenizer, [messages], Sampling(max_new_tokens=6)).texts[0]

    return _answer


def _run(args: list[str], stdin: str | None = None) -> Any:
    result = CliRunner().invoke(app, args, input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


def test_prompt_from_argument(wordy_dir: Path, answer: Any) -> None:
    result = _run(["generate", str(wordy_dir), QUESTION, *GREEDY, "--system", "Answer briefly."])
    expected = answer(
        [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]
    )
    assert result.stdout == expected + "\n" and expected
    assert "6 tokens in" in result.stderr and "tokens/s" in result.stderr


def test_prompt_from_stdin(wordy_dir: Path, answer: Any) -> None:
    result = _run(["generate", str(wordy_dir), *GREEDY], stdin=QUESTION + "\n")
    assert result.stdout == answer([{"role": "user", "content": QUESTION}]) + "\n"


def test_prompts_file_gives_jsonl_in_order(wordy_dir: Path, answer: Any, tmp_path: Path) -> None:
    conversation = [
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "Fine."},
    ]
    prompts = write_jsonl(
        tmp_path / "prompts.jsonl",
        [QUESTION, {"prompt": "Explain os.path.join.", "id": 7}, {"messages": conversation}],
    )
    output = tmp_path / "answers.jsonl"
    result = _run(["generate", str(wordy_dir), "--file", str(prompts), "--output", str(output), *GREEDY])
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [r["completion"] for r in rows] == [
        answer([{"role": "user", "content": QUESTION}]),
        answer([{"role": "user", "content": "Explain os.path.join."}]),
        answer(conversation[:1]),
    ]
    assert rows[1]["id"] == 7 and rows[2]["reference"] == "Fine." and rows[0]["finish_reason"] == "length"
    assert f"{output}: 3 answers" in result.stderr and result.stdout == ""


def test_prompts_from_stdin_jsonl_with_samples(wordy_dir: Path) -> None:
    args = [
        "generate",
        str(wordy_dir),
        "--file",
        "-",
        "--n",
        "3",
        "--temperature",
        "1.0",
        "--seed",
        "1",
        "-m",
        "4",
    ]
    first = _run([*args, "--device", "cpu"], stdin=json.dumps({"prompt": QUESTION}) + "\n")
    second = _run([*args, "--device", "cpu"], stdin=json.dumps({"prompt": QUESTION}) + "\n")
    row = json.loads(first.stdout)
    assert len(row["samples"]) == 3 and row["completion"] == row["samples"][0]
    assert len(set(row["samples"])) > 1 and first.stdout == second.stdout  # sampled, and seeded


def test_bad_prompt_line_names_file_and_line(wordy_dir: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(QUESTION) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"prompts.jsonl:2: "):
        _run(["generate", str(wordy_dir), "--file", str(prompts), *GREEDY])


def test_assisted_decoding_gives_the_same_greedy_answer(
    wordy_dir: Path, tiny_model_dir: Path, answer: Any
) -> None:
    result = _run(["generate", str(wordy_dir), QUESTION, *GREEDY, "--assistant", str(tiny_model_dir)])
    assert result.stdout == answer([{"role": "user", "content": QUESTION}]) + "\n"
    assert f"assisted by {tiny_model_dir}" in result.stderr and "tokens/s" in result.stderr
