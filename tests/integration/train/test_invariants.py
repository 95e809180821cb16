"""Training invariants on the tiny model (fp32, CPU): how a batch is split must not change the result.

Gradient accumulation is exact because the loss is a token average over the whole optimizer step:
transformers counts the trained tokens of all accumulated micro-batches first (num_items_in_batch),
each micro-batch loss is its token sum divided by that count, and the gradients add up to the gradient
of the step's token mean. Across processes, average_tokens_across_devices=True (set in
pipeline.train.arguments) gathers that count from every rank; see tests/integration/train/test_ddp.py.
Padding-free rows and group_by_length keep this exact: group_by_length sizes its mega-batches by
batch_size x grad_accum, which is 4 in both runs below, so both see the same examples in each step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pipeline.config.loader import load_recipe
from pipeline.train.inputs import load_model, prepare_inputs
from pipeline.train.loop import train_model


def _train(make_recipe: Any, tmp_path: Path, batch_size: int, grad_accum: int) -> tuple[list[float], dict]:
    recipe = load_recipe(
        str(
            make_recipe(
                train={"batch_size": batch_size, "grad_accum": grad_accum, "max_steps": 2},
                data={"allow_contamination": True},
            )
        ),
        [f"train.output_dir={tmp_path / f'b{batch_size}a{grad_accum}'}"],
    )
    inputs = prepare_inputs(recipe)
    trainer = train_model(
        recipe, tmp_path / "run", load_model(recipe), inputs.tokenizer, inputs.train
    ).trainer
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    lora = {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_" in k}
    return losses, lora


def test_grad_accumulation_matches_one_big_batch(make_recipe: Any, tmp_path: Path) -> None:
    """(batch 4, accumulation 1) == (batch 1, accumulation 4): same loss and LoRA weights within 1e-5."""
    big_losses, big = _train(make_recipe, tmp_path, batch_size=4, grad_accum=1)
    small_losses, small = _train(make_recipe, tmp_path, batch_size=1, grad_accum=4)

    assert len(big_losses) == 2 and big_losses == pytest.approx(small_losses, abs=1e-5)
    assert big.keys() == small.keys() and big
    moved = [k for k in big if "lora_B" in k and big[k].abs().sum() > 0]
    assert moved, "LoRA B never left zero: the comparison would be vacuous"
    for key in big:
        assert torch.allclose(big[key], small[key], atol=1e-5), f"{key} differs after accumulation"
