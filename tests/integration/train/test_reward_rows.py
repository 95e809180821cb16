"""Padding-free reward batches give trl's RewardTrainer the scores and loss its padded batches give."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pipeline.models.heads import REWARD_HEAD, to_reward_model
from pipeline.train.attention import packed_attention
from pipeline.train.reward_rows import ENDS, PackedPairs, scores_at_row_ends

EXAMPLES = [
    {"chosen_ids": [4, 5, 6, 7, 8], "rejected_ids": [4, 5, 9]},
    {"chosen_ids": [4, 10, 11], "rejected_ids": [4, 10, 12, 13, 14, 15]},
    {"chosen_ids": [4, 16, 17, 18], "rejected_ids": [4, 16, 19, 20, 1]},  # 1: a trailing pad, not scored
]


def _scorer(tiny_model: Any) -> Any:
    model = to_reward_model(tiny_model, seed=3).eval()
    model.config.pad_token_id = 1
    return model


def test_one_row_scores_each_answer_as_the_padded_batch_does(tiny_model: Any) -> None:
    from trl.trainer.reward_trainer import DataCollatorForPreference

    model = _scorer(tiny_model)
    padded = DataCollatorForPreference(pad_token_id=1)(EXAMPLES)
    with torch.no_grad():
        expected = model(**padded).logits
    packed = PackedPairs(pad_token_id=1)(EXAMPLES)
    assert packed["input_ids"].shape == (
        1,
        sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in EXAMPLES),
    )
    assert packed[ENDS].tolist() == [4, 7, 11, 14, 20, 24]  # the trailing pad of the last answer is skipped
    with torch.no_grad(), packed_attention(model) as per_example, scores_at_row_ends(model, model.score):
        assert per_example
        got = model(**packed).logits
    assert got.shape == expected.shape == (6, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # Outside the block the model is as it was: one pooled score per row of a padded batch.
    with torch.no_grad():
        torch.testing.assert_close(model(**padded).logits, expected)


def test_trl_loss_and_metrics_are_the_same_on_packed_rows(tiny_model: Any, tiny_tokenizer: Any) -> None:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    model = _scorer(tiny_model)
    args = RewardConfig(
        output_dir="/tmp/unused", report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False
    )
    data = Dataset.from_list(EXAMPLES)
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    padded = DataCollatorForPreference(pad_token_id=pad)(EXAMPLES)
    packed = PackedPairs(pad_token_id=pad)(EXAMPLES)
    with torch.no_grad():
        loss_padded = trainer.compute_loss(trainer.model, dict(padded))
        # the model is in eval mode, so trl logs these under "eval"
        metrics_padded = {k: list(v) for k, v in trainer._metrics["eval"].items()}
        trainer._metrics["eval"].clear()
        head = next(m for n, m in trainer.model.named_modules() if n.split(".")[-1] == REWARD_HEAD)
        with packed_attention(trainer.model), scores_at_row_ends(trainer.model, head):
            loss_packed = trainer.compute_loss(trainer.model, dict(packed))
    assert float(loss_packed) == pytest.approx(float(loss_padded), rel=1e-4)
    for key in ("accuracy", "margin", "mean_reward"):
        assert trainer._metrics["eval"][key][0] == pytest.approx(metrics_padded[key][0], rel=1e-4, abs=1e-6)
