"""The model card: Hub metadata that parses back (model-index), the sections users need, the loss curve."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from pipeline.config.loader import validate_recipe_dict
from pipeline.hub.card import build_model_card, is_hub_id, write_loss_curve, write_model_card

METRICS = {
    "base": {
        "perplexity": 41.5,
        "perplexity_all_tokens": 60.25,
        "similarity": {"mean": 0.31, "median": 0.3},
        "lexical": {"rougeL": 0.125},
    },
    "adapted": {
        "perplexity": 12.75,
        "perplexity_all_tokens": 30.5,
        "similarity": {"mean": 0.52, "median": 0.5},
        "lexical": {"rougeL": 0.25},
    },
    "train": {
        "steps": 3,
        "loss": 2.5,
        "seconds": 12.34,
        "examples": 24,
        "hardware": "CPU x86_64, 2 threads",
        "tokens_per_second": 312.4,
        "roofline_share": 0.21,
        "roofline": {"gflops": 810.0, "source": "measured GEMMs (bfloat16, 2 threads)"},
        "log_history": [
            {"step": 1, "loss": 3.0},
            {"step": 2, "loss": 2.6},
            {"step": 3, "loss": 2.1},
            {"step": 3, "eval_loss": 2.4},
        ],
    },
}


def recipe(**sections: dict) -> object:
    raw = {
        "model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "abc123"},
        "adapter": {"r": 8, "alpha": 16, "use_dora": True},
        "data": {"train": [{"path": "org/chat-data", "split": "train"}, "recipes/data/local.jsonl"]},
        "train": {"learning_rate": 1e-4, "max_steps": 3},
        **sections,
    }
    return validate_recipe_dict(raw, "test.yaml", name="dora-test")


def test_card_metadata_parses_back_as_hub_model_index() -> None:
    card = build_model_card(recipe(), METRICS, repo_id="me/dora-test", loss_image="loss_curve.png")
    parsed = ModelCard(str(card), ignore_metadata_errors=False)  # raises on malformed model-index
    data = parsed.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert data.datasets == ["org/chat-data"]  # local files are described in the text, not as Hub ids
    assert "dora" in data.tags
    results = {(r.metric_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("perplexity (trained tokens), adapted", "perplexity")] == 12.75
    assert results[("perplexity (trained tokens), base model", "perplexity")] == 41.5
    assert results[("answer similarity (mean cosine), adapted", "cosine_similarity")] == 0.52
    assert results[("ROUGE-L F1, adapted", "rouge")] == 0.25
    assert len(results) == 8  # medians stay in the text table; model-index holds the headline metrics
    assert {r.dataset_type for r in data.eval_results} == {"org/chat-data"}


def test_card_text_has_every_section_a_user_needs() -> None:
    text = str(build_model_card(recipe(), METRICS, repo_id="me/dora-test", loss_image="loss_curve.png"))
    for needle in (
        "revision `abc123`",
        "`org/chat-data`",
        "`recipes/data/local.jsonl`",
        "| rank r | 8 |",
        "| learning rate | 0.0001 |",
        "training time: 12.34 s",
        "hardware: CPU x86_64, 2 threads",
        "throughput: 312.4 real tokens/s, 0.21 of the roofline (810.0 GFLOP/s, measured GEMMs (bfloat16, 2 threads))",
        "| perplexity (trained tokens) | 41.5 | 12.75 | -28.75 (lower is better) |",
        "## Intended use",
        "## Limitations",
        "![training loss and learning rate per step](loss_curve.png)",
        'AutoPeftModelForCausalLM.from_pretrained("me/dora-test")',
        'load_target("me/dora-test")',
        "pipeline merge me/dora-test",
    ):
        assert needle in text, needle


def test_merged_full_and_local_base_cards() -> None:
    merged = ModelCard(str(build_model_card(recipe(), METRICS, repo_id="me/m", merged=True)))
    assert merged.data.library_name == "transformers"
    assert 'AutoModelForCausalLM.from_pretrained("me/m")' in merged.text and "peft" not in merged.text.lower()
    local = recipe(model={"name": "/models/tiny"}, eval={"enabled": False})
    card = ModelCard(str(build_model_card(local, {"train": {"steps": 1}})), ignore_metadata_errors=False)
    assert card.data.base_model is None  # a local folder is not valid Hub metadata
    assert card.data.eval_results is None and "Evaluation was off." in card.text
    assert "hardware: not recorded" in card.text and "ORG/NAME" in card.text
    assert "throughput: -" in card.text


@pytest.mark.parametrize(
    ("name", "expected"),
    [("org/model", True), ("./org/model", False), ("/abs/path", False), ("a/b/c", False), ("model", False)],
)
def test_is_hub_id(name: str, expected: bool) -> None:
    assert is_hub_id(name) is expected


def test_write_model_card_writes_card_and_png(tmp_path: Path) -> None:
    readme = write_model_card(tmp_path, recipe(), METRICS)
    assert (tmp_path / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "![training loss and learning rate per step](loss_curve.png)" in readme.read_text()
    assert not write_loss_curve({"train": {"log_history": []}}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize(
    ("native", "shown"), [(True, "native (bf16 in this run)"), (False, "native (fp32 in this run)")]
)
def test_card_says_what_native_meant_in_the_run(
    monkeypatch: pytest.MonkeyPatch, native: bool, shown: str
) -> None:
    """`native` depends on the machine, so the card records what it resolved to; explicit values stay as given."""
    import torch

    import pipeline.models.precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(pipeline.models.precision, "bf16_is_native", lambda: native)
    card = recipe(
        model={"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "dtype": "native"},
        train={"precision": "native"},
    )
    text = str(build_model_card(card, METRICS, repo_id="me/dora-test", loss_image="loss_curve.png"))
    dtype = "bfloat16" if native else "float32"
    assert f"| precision | {shown} |" in text
    assert f"| weight dtype | native ({dtype} in this run) |" in text
    explicit = str(build_model_card(recipe(train={"precision": "fp32"}), METRICS, repo_id="me/x"))
    assert "| precision | fp32 |" in explicit
