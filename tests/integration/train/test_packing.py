"""Packing and padding-free batches give the same loss as padded batches: no attention across examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pipeline.config.loader import load_recipe
from pipeline.data.splits import load_splits
from pipeline.data.tokenize import tokenize_records
from pipeline.models.loading import load_base_model, load_tokenizer
from pipeline.train.stages.build import build_trainer


def _loss_and_batch(
    make_recipe: Any, tmp_path: Path, name: str, **train: Any
) -> tuple[float, dict[str, Any]]:
    """The model's loss on one batch holding every training example, collated the way trl collates it."""
    recipe = load_recipe(
        str(
            make_recipe(
                name,
                train={"max_length": 256, "group_by_length": False, **train},
                data={"eval": [], "eval_size": 0},
            )
        )
    )
    tokenizer = load_tokenizer(recipe.model)
    model = load_base_model(recipe.model)  # fp32
    dataset = tokenize_records(load_splits(recipe.data).train[:8], tokenizer, recipe.train)
    trainer = build_trainer(recipe, tmp_path / name, model, tokenizer, dataset, None)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    base = trainer.model.eval()
    with torch.no_grad():
        loss = base(**{k: v for k, v in batch.items() if k != "seq_lengths"}).loss.item()
    return loss, {"batch": batch, "model": base, "rows": rows}


def test_packed_and_padding_free_loss_equal_padded_loss(make_recipe: Any, tmp_path: Path) -> None:
    padded, plain = _loss_and_batch(make_recipe, tmp_path, "padded", packing=False, padding_free=False)
    assert "attention_mask" in plain["batch"] and plain["batch"]["input_ids"].shape[0] == 8
    for mode, settings in {"packing": {"packing": True}, "padding_free": {"padding_free": True}}.items():
        packed, info = _loss_and_batch(make_recipe, tmp_path, mode, **settings)
        batch = info["batch"]
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # one row, no padding
        starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
        assert len(starts) == 8, mode  # eight examples, each with its own positions
        assert abs(packed - padded) < 1e-5, (mode, packed, padded)

        # Control: the same row without per-example positions attends across examples and moves the loss
        # by far more than the tolerance, so the equality above is not an accident of the data.
        with torch.no_grad():
            leaky = info["model"](input_ids=batch["input_ids"], labels=batch["labels"]).loss.item()
        assert abs(leaky - padded) > 1e-4, mode
