"""The bundled preference pairs: small, rebuilt byte for byte by their script, every pair valid, and each
rejected answer the right signature with another object's description."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from pipeline.config.loader import load_recipe
from pipeline.data.pairs import pair_parts
from pipeline.data.splits import load_splits

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "recipes" / "data" / "pydoc-pairs"


FEEDBACK = ROOT / "recipes" / "data" / "pydoc-feedback"
KINDS = ROOT / "recipes" / "data" / "pydoc-kinds"


@pytest.mark.parametrize("folder", [DATA, FEEDBACK, KINDS])
def test_bundled_files_are_small_and_documented(folder: Path) -> None:
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert set(sizes) == {"train.jsonl", "eval.jsonl", "README.md"}
    assert sum(sizes.values()) < 1_000_000
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "Python Software Foundation License" in card and "scripts/build_preference_data.py" in card


def test_the_script_rebuilds_the_bundled_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    script = importlib.import_module("build_preference_data")
    monkeypatch.setattr(script, "OUT_DIR", tmp_path / "pairs")
    monkeypatch.setattr(script, "FEEDBACK_DIR", tmp_path / "feedback")
    monkeypatch.setattr(script, "KINDS_DIR", tmp_path / "kinds")
    script.main()
    for name in ("train.jsonl", "eval.jsonl", "README.md"):
        assert (tmp_path / "pairs" / name).read_bytes() == (DATA / name).read_bytes(), name
        assert (tmp_path / "feedback" / name).read_bytes() == (FEEDBACK / name).read_bytes(), name
        assert (tmp_path / "kinds" / name).read_bytes() == (KINDS / name).read_bytes(), name


def test_pairs_load_as_dpo_data_and_differ_only_in_the_description() -> None:
    splits = load_splits(load_recipe("dpo-small").data)
    assert len(splits.train) == 1500 and len(splits.eval) == 120
    train_names = {json.loads(line)["source"] for line in (DATA / "train.jsonl").read_text().splitlines()}
    eval_names = {json.loads(line)["source"] for line in (DATA / "eval.jsonl").read_text().splitlines()}
    assert not train_names & eval_names
    for record in splits.train + splits.eval:
        prompt, chosen, rejected = pair_parts(record)
        assert prompt[0]["role"] == "system" and prompt[-1]["role"] == "user"
        signature, _, right = chosen[0]["content"].partition("`: ")
        other, _, wrong = rejected[0]["content"].partition("`: ")
        assert signature == other and right.strip() != wrong.strip()


def test_labelled_answers_load_as_kto_data_half_good() -> None:
    splits = load_splits(load_recipe("kto-small").data)
    assert len(splits.train) == 1500 and len(splits.eval) == 120
    share = sum(r["label"] for r in splits.train) / len(splits.train)
    assert 0.45 < share < 0.55


def test_kind_prompts_have_one_word_answers() -> None:
    splits = load_splits(load_recipe("grpo-small").data)
    assert len(splits.train) == 201 and len(splits.eval) == 11
    assert {r["answer"] for r in splits.train} == {"function", "class", "method"}
    assert all(r["messages"][-1] == {"role": "assistant", "content": r["answer"]} for r in splits.train)
