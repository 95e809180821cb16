"""train.stage: kto on the tiny model: trl's KTOTrainer on labelled completions, LoRA, from scratch or a parent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_jsonl

from pipeline.config.loader import load_recipe
from pipeline.workflow import finetune

RECORDS = [
    {"prompt": "What does json.dumps do?", "completion": "It serializes an object to JSON.", "label": True},
    {"prompt": "What does os.getcwd return?", "completion": "The home directory.", "label": False},
    {
        "prompt": [{"role": "user", "content": "What does len do?"}],
        "completion": "It counts items.",
        "label": True,
    },
    {
        "prompt": "What does abs do?",
        "completion": [{"role": "assistant", "content": "It rounds."}],
        "label": "false",
    },
]


def _kto_recipe(make_recipe: Any, tmp_path: Path, **sections: Any) -> Path:
    train = write_jsonl(tmp_path / "labelled" / "train.jsonl", RECORDS * 4)
    held_out = write_jsonl(tmp_path / "labelled" / "eval.jsonl", RECORDS)
    return make_recipe(
        name="kto",
        data={"train": str(train), "eval": str(held_out), "allow_contamination": True},
        train={"stage": "kto", "batch_size": 4, "learning_rate": 5e-3},
        **sections,
    )


def test_kto_continues_an_sft_run_and_scores_both_kinds(make_recipe: Any, tmp_path: Path) -> None:
    sft = finetune(load_recipe(str(make_recipe(name="sft", eval={"enabled": False}))))
    run = finetune(load_recipe(str(_kto_recipe(make_recipe, tmp_path, model={"adapter": str(sft.run_dir)}))))
    first = run.metrics["train"]["log_history"][0]
    # Policy = reference (the parent) at the first step: every reward and the KL estimate are 0, so each
    # completion's loss is 1 - sigmoid(0) = 0.5.
    assert first["loss"] == pytest.approx(0.5, abs=1e-4)
    assert run.metrics["train"]["steps"] == 3
    assert not (run.run_dir / "adapter" / "ref").exists()
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    for side in ("base", "adapted"):
        labelled = metrics[side]["labelled"]
        assert labelled["records"] == 4 and labelled["per_record"]["label"] == [True, False, True, False]
        assert labelled["gap"] == pytest.approx(labelled["desirable_logp"] - labelled["undesirable_logp"])
    # The SFT-style metrics score only the desirable completions (2 of the 4 eval records).
    assert metrics["adapted"]["examples"] == 2
    change = metrics["comparison"]["labelled"]
    assert change["desirable_logp_change"] == pytest.approx(
        metrics["adapted"]["labelled"]["desirable_logp"] - metrics["base"]["labelled"]["desirable_logp"]
    )
    assert json.loads((run.run_dir / "manifest.json").read_text())["parent"]["run"] == str(
        sft.run_dir.resolve()
    )
