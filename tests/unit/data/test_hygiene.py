"""Data hygiene: planted duplicates, near duplicates, a contaminated eval example and every kind of secret
are found at the right file:line, masked in reports, redacted and removed when the recipe asks."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.data.hygiene import apply_hygiene, check_splits
from pipeline.data.hygiene_report import hygiene_report, summary_lines
from pipeline.data.pii import find_pii, iban_valid, luhn_valid, mask, redact
from pipeline.data.records import convert
from pipeline.data.splits import Splits, load_splits
from pipeline.errors import DataError

LONG = (
    "The json module turns Python objects such as dicts, lists, strings and numbers into JSON text, and "
    "json.loads reads that text back into the same objects; indent and sort_keys control the layout."
)
SECRETS = {
    "email": "jane.doe@example.com",
    "phone": "+44 20 7946 0958",
    "payment_card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "hf_token": "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3f",
    "openai_key": "sk-proj-" + "Xy12Ab34Cd56Ef78Gh90Ij12",
    "aws_access_key": "AKIA" + "IOSFODNN7EXAMPLE",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx3Yk\n-----END RSA PRIVATE KEY-----",
}
CLEAN_NUMBERS = "Version 3.11.2 came out on 2024-01-15; the server is 192.168.100.100 on port 8080."


def chat(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def planted(tmp_path: Path) -> tuple[Path, Path]:
    """train.jsonl: line 2 duplicates line 1 (case, punctuation, spacing), line 4 near-duplicates line 3,
    lines 5-12 hold one secret each, line 13 has look-alike numbers only, line 14 is copied into eval."""
    records = [
        chat("What does json.dumps do?", "It serializes an object to a JSON string."),
        chat("what does JSON.DUMPS do", "It  serializes an object to a json string!"),
        chat("Explain the json module.", LONG),
        chat("Explain the json module.", LONG.replace("numbers", "floats")),
    ]
    records += [
        chat(f"Message {i}: what is this?", f"Contact details: {value} (kept on file)")
        for i, value in enumerate(SECRETS.values())
    ]
    records.append(chat("Which version?", CLEAN_NUMBERS))
    records.append(chat("What does os.path.join do?", "It joins path segments with the right separator."))
    train = write_jsonl(tmp_path / "train.jsonl", records)
    evaluation = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            chat("What is pathlib for?", "Object-oriented file system paths."),
            chat("What does os.path.join do?", "It joins path segments with the right separator."),
        ],
    )
    return train, evaluation


@pytest.fixture
def planted_recipe(tmp_path: Path, make_recipe: Any) -> Any:
    def _make(**data: Any) -> Any:
        train, evaluation = planted(tmp_path / "planted")
        return load_recipe(
            str(
                make_recipe(
                    data={"train": str(train), "eval": str(evaluation), "allow_contamination": False, **data}
                )
            )
        )

    return _make


def test_validators_on_known_numbers() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and iban_valid("DE89370400440532013000")
    assert not iban_valid("GB82WEST12345698765433")


def test_each_secret_kind_found_once_and_look_alikes_ignored() -> None:
    for kind, value in SECRETS.items():
        found = find_pii(f"Contact details: {value} (kept on file)")
        assert [(f.kind, f.value) for f in found] == [(kind, value)], kind
    invalid = "card 4111 1111 1111 1112, IBAN GB82WEST12345698765433"
    assert find_pii(CLEAN_NUMBERS) == [] and find_pii(invalid) == []


def test_mask_and_redact_never_show_the_value() -> None:
    for value in SECRETS.values():
        assert value not in mask(value) and len(mask(value)) < len(value) + 20
    text = " and ".join(SECRETS.values())
    cleaned = redact(text)
    assert not any(value in cleaned for value in SECRETS.values())
    assert cleaned.count("[") == len(SECRETS) and "[CARD]" in cleaned and "[PRIVATE_KEY]" in cleaned


def test_report_finds_everything_at_its_line(planted_recipe: Any) -> None:
    recipe = planted_recipe(allow_contamination=True)
    splits = load_splits(recipe.data)
    report = check_splits(splits).report
    train_file = str(recipe.resolve_path(recipe.data.train[0].path))
    dup = report["duplicates"]
    assert dup["exact_duplicates"] == 1 and dup["exact_examples"] == [[f"{train_file}:1", f"{train_file}:2"]]
    assert (dup["near_clusters"], dup["near_duplicate_examples"], dup["near_duplicates"]) == (1, 2, 1)
    assert dup["near_examples"][0]["kept"] == f"{train_file}:3"
    assert dup["near_examples"][0]["duplicates"] == [f"{train_file}:4"]
    assert dup["near_examples"][0]["similarity"] >= 0.8
    contamination = report["contamination"]
    assert contamination["contaminated"] == 1 and contamination["examples"][0]["exact"]
    assert contamination["examples"][0]["eval"].endswith("eval.jsonl:2")
    assert contamination["examples"][0]["train"] == f"{train_file}:14"
    pii = report["pii"]["train"]
    assert pii["counts"] == dict.fromkeys(SECRETS, 1) and pii["records"] == len(SECRETS)
    for line, kind in enumerate(SECRETS, start=5):
        (example,) = pii["examples"][kind]
        assert example.startswith(f"{train_file}:{line} (assistant turn 1): ")
        assert SECRETS[kind] not in example
    assert report["pii"]["eval"]["counts"] == {}
    assert splits.train == load_splits(recipe.data).train  # reporting alone changes nothing


def test_contamination_refused_unless_allowed(planted_recipe: Any) -> None:
    recipe = planted_recipe()
    with pytest.raises(
        DataError, match=r"eval\.jsonl:2: 1 eval example.*train\.jsonl:14.*allow_contamination"
    ):
        apply_hygiene(recipe.data, load_splits(recipe.data))


def test_dedup_removes_duplicates_and_train_copies_of_eval(planted_recipe: Any) -> None:
    recipe = planted_recipe(dedup=True)
    splits = load_splits(recipe.data)
    result = apply_hygiene(recipe.data, splits)  # no error: the train copy of the eval example is dropped
    kept = [r["location"].rsplit(":", 1)[1] for r in result.splits.train]
    assert kept == [str(n) for n in range(1, 14) if n not in (2, 4)]
    assert result.report["removed"] == 3 and result.report["contamination_after_dedup"] == 0
    assert result.splits.eval == splits.eval


def test_redact_replaces_secrets_in_training_text(
    planted_recipe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = planted_recipe(redact=True, allow_contamination=True)
    with caplog.at_level(logging.WARNING, logger="pipeline.data.hygiene"):
        result = apply_hygiene(recipe.data, load_splits(recipe.data))
    logged = caplog.text
    assert "aws_access_key 1, email 1, hf_token 1" in logged and "replaced with placeholders" in logged
    assert (
        "of 14 training examples, 1 repeat an earlier one exactly and 2 fall in 1 near-duplicate cluster"
        in logged
        and "1 eval example(s) also in train" in logged
    )
    assert not any(value in logged for value in SECRETS.values())
    text = json.dumps(result.splits.train)
    assert not any(value.replace("\n", "\\n") in text for value in SECRETS.values())
    answers = [r["messages"][1]["content"] for r in result.splits.train[4:12]]
    assert answers[0] == "Contact details: [EMAIL] (kept on file)"
    assert answers[7] == "Contact details: [PRIVATE_KEY] (kept on file)"
    assert result.report["redacted"] == dict.fromkeys(SECRETS, 1)
    assert CLEAN_NUMBERS in text and len(result.splits.train) == 14


def test_hygiene_report_on_a_file(tmp_path: Path) -> None:
    train, evaluation = planted(tmp_path)
    report = hygiene_report(str(train), str(evaluation), tmp_path / "out" / "hygiene.json")
    saved = json.loads((tmp_path / "out" / "hygiene.json").read_text())
    assert saved["contamination"]["contaminated"] == 1 and saved["pii"]["train"]["counts"]["iban"] == 1
    text = "\n".join(report["lines"])
    assert "exact duplicates (normalised text): 1 in 1 group(s)" in text
    assert "eval examples also in train: 1 of 2" in text
    assert not any(value in text for value in SECRETS.values())


def _variant(base: list[str], cluster: int, copy: int) -> str:
    """The base text with one of its 150 words changed: Jaccard of 3-gram sets >= 0.92 with the others."""
    words = list(base)
    words[10 + copy] = f"variant{cluster}x{copy}"
    return " ".join(words)


def test_near_duplicate_counts_are_examples_and_clusters(tmp_path: Path) -> None:
    """Three clusters of 5, 3 and 2 similar texts plus 30 unrelated ones: a cluster of k counts k examples
    (never k*(k-1)/2 pairs), dedup keeps exactly one per cluster."""
    rng = random.Random(3)
    vocabulary = [f"w{i}" for i in range(5000)]
    bases = [[rng.choice(vocabulary) for _ in range(150)] for _ in range(3)]
    records, expected = [], []
    for cluster, size in enumerate((5, 3, 2)):
        expected.append(list(range(len(records) + 1, len(records) + size + 1)))
        records += [chat("Tell me.", _variant(bases[cluster], cluster, copy)) for copy in range(size)]
    records += [chat("Tell me.", " ".join(rng.choice(vocabulary) for _ in range(60))) for _ in range(30)]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    splits = load_splits(load_recipe("lora-small", [f"data.train={train}", "data.eval_size=0"]).data)
    result = check_splits(splits, dedup=True)
    dup = result.report["duplicates"]
    assert (dup["near_clusters"], dup["near_duplicate_examples"], dup["near_duplicates"]) == (3, 10, 7)
    assert [int(c["kept"].rsplit(":", 1)[1]) for c in dup["near_examples"]] == [m[0] for m in expected]
    assert [c["examples"] for c in dup["near_examples"]] == [5, 3, 2]
    assert result.report["removed"] == 7
    kept = {int(r["location"].rsplit(":", 1)[1]) for r in result.splits.train}
    assert len(kept) == 33 and all(len(kept & set(members)) == 1 for members in expected)
    lines = "\n".join(summary_lines(result.report))
    assert "10 example(s) in 3 cluster(s); dedup would drop 7" in lines


def tool_record() -> dict[str, Any]:
    """A converted record with an email in a nested tool-call argument, a card number as an integer
    argument, a phone number in the tool's output and an IBAN in the tool's description."""
    raw = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "send_invoice",
                    "description": f"Pays into {SECRETS['iban']} unless told otherwise.",
                    "parameters": {"type": "object", "properties": {"to": {"type": "object"}}},
                },
            }
        ],
        "messages": [
            {"role": "user", "content": "Send the invoice to Jane."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "send_invoice",
                            "arguments": json.dumps(
                                {"to": {"email": SECRETS["email"]}, "card": 4111111111111111, "copies": 2}
                            ),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"Sent; Jane's phone: {SECRETS['phone']}"},
            {"role": "assistant", "content": "Done."},
        ],
    }
    return {**convert(raw, "messages"), "location": "tools.jsonl:1"}


def test_redact_reaches_tool_call_arguments_tool_outputs_and_tool_descriptions() -> None:
    record = tool_record()
    result = check_splits(Splits(train=[record], eval=[]), redact_pii=True)
    pii = result.report["pii"]["train"]
    kinds = ("email", "payment_card", "phone", "iban")
    assert pii["counts"] == dict.fromkeys(kinds, 1) and pii["records"] == 1
    assert pii["examples"]["email"] == [
        f"tools.jsonl:1 (assistant turn 1 tool_calls[0].arguments.to.email): {mask(SECRETS['email'])}"
    ]
    assert pii["examples"]["payment_card"][0].startswith(
        "tools.jsonl:1 (assistant turn 1 tool_calls[0].arguments.card)"
    )
    assert pii["examples"]["iban"][0].startswith("tools.jsonl:1 (tools[0].function.description)")
    assert result.report["redacted"] == {**dict.fromkeys(SECRETS, 0), **dict.fromkeys(kinds, 1)}
    (clean,) = result.splits.train
    call = clean["messages"][1]["tool_calls"][0]
    assert call["function"] == {
        "name": "send_invoice",
        "arguments": {"to": {"email": "[EMAIL]"}, "card": "[CARD]", "copies": 2},
    }
    assert call["id"] == "call_1" and clean["messages"][2]["content"] == "Sent; Jane's phone: [PHONE]"
    assert clean["tools"][0]["function"]["description"] == "Pays into [IBAN] unless told otherwise."
    assert clean["tools"][0]["function"]["name"] == "send_invoice"
    assert record["messages"][1]["tool_calls"][0]["function"]["arguments"]["to"]["email"] == SECRETS["email"]
