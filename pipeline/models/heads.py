"""Reward models: a causal LM's backbone under a one-output sequence-classification head (`score`), and the
adapters trained on one (peft task type SEQ_CLS), put back on the right kind of base when they load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# The head transformers' *ForSequenceClassification models score with, and peft's task type for them.
REWARD_HEAD = "score"
REWARD_TASK = "SEQ_CLS"


def is_reward_model(model: Any) -> bool:
    """Whether the model (or the model under a peft wrapper) scores sequences with one output."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(inner).__name__.endswith("ForSequenceClassification") and inner.config.num_labels == 1


def is_reward_adapter(folder: Path) -> bool:
    """Whether the adapter folder holds a reward model's adapter (peft task type SEQ_CLS)."""
    config = Path(folder) / "adapter_config.json"
    try:
        return json.loads(config.read_text()).get("task_type") == REWARD_TASK
    except (OSError, ValueError):
        return False


def to_reward_model(model: PreTrainedModel, seed: int | None = None) -> PreTrainedModel:
    """The causal LM's backbone (shared, not copied) under a new sequence-classification head with one output;
    the head is initialised as transformers initialises it (seeded with `seed` when given) in the backbone's
    dtype. The LM head is dropped."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    settings = {k: v for k, v in model.config.to_dict().items() if k not in ("id2label", "label2id")}
    config = AutoConfig.for_model(**{**settings, "num_labels": 1})
    config.pad_token_id = model.config.pad_token_id
    with torch.device("meta"):  # no second backbone in memory: the causal LM's is put in below
        scorer = AutoModelForSequenceClassification.from_config(config, dtype=model.dtype)
    setattr(scorer, scorer.base_model_prefix, model.base_model)
    head = getattr(scorer, REWARD_HEAD)
    device = next(model.parameters()).device
    head.to_empty(device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
    with torch.no_grad():
        weight = torch.empty(head.weight.shape, dtype=torch.float32)
        weight.normal_(0.0, config.initializer_range, generator=generator)
        head.weight.copy_(weight)
        if head.bias is not None:
            head.bias.zero_()
    scorer.generation_config = None
    return scorer


def base_for_adapter(model: PreTrainedModel, folder: Path) -> PreTrainedModel:
    """The base an adapter folder loads onto: the causal LM itself, or a reward model built on it when the
    adapter was trained as one (its trained `score` head comes with the adapter)."""
    return to_reward_model(model) if is_reward_adapter(folder) else model


def attach_adapter(model: PreTrainedModel, folder: Path) -> Any:
    """peft's PeftModel of the adapter folder on the right kind of base (reward or causal LM)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_for_adapter(model, folder), str(folder))


def auto_class_for(folder: Path) -> Any:
    """transformers' Auto class that loads the full model saved in `folder` (a merged reward model is a
    *ForSequenceClassification, everything else a causal LM)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    try:
        architectures = json.loads((Path(folder) / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError):
        architectures = []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return AutoModelForSequenceClassification
    return AutoModelForCausalLM


def score_rows(model: PreTrainedModel, rows: list[list[int]], batch_size: int, pad_id: int) -> list[float]:
    """The reward model's score of each token-id row (right-padded batches, in eval mode)."""
    import torch

    scores: list[float] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for index, ids in enumerate(batch):
                input_ids[index, : len(ids)] = torch.tensor(ids)
                attention[index, : len(ids)] = 1
            with torch.no_grad():
                logits = model(
                    input_ids=input_ids.to(model.device), attention_mask=attention.to(model.device)
                ).logits
            scores.extend(float(v) for v in logits[:, 0].float().cpu())
    finally:
        model.train(was_training)
    return scores


def is_reward_target(adapter_dir: Path | None, model_dir: Path) -> bool:
    """Whether a resolved target (its adapter folder, else its model folder) is a reward model."""
    if adapter_dir is not None:
        return is_reward_adapter(adapter_dir)
    return auto_class_for(model_dir).__name__ == "AutoModelForSequenceClassification"


def refuse_reward_model(adapter_dir: Path | None, model_dir: Path, target: str, what: str) -> None:
    """AssetError in one line when the target is a reward model, which scores text and cannot `what`."""
    from pipeline.errors import AssetError

    if is_reward_target(adapter_dir, model_dir):
        raise AssetError(
            f"{target}: a reward model scores answers and cannot {what}; use it as a GRPO or RLOO reward "
            "(grpo.rewards: [{model: RUN}]) or score held-out pairs with `pipeline eval`."
        )
