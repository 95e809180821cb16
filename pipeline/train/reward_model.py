"""A reward model run as one of GRPO's and RLOO's rewards (grpo.rewards: [{model: RUN}]): it scores each
prompt with its completion, rendered by the reward model's own chat template, with its score head.

The folder is checked when the recipe's rewards resolve (so `validate` rejects a wrong path before any weight
loads); the model loads on the first call, with its LoRA merged for speed, and stays loaded for the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import AssetError, RecipeError

SCORING_BATCH = 8  # sequences per forward pass of the reward model


def check_reward_model(target: str, source: str) -> None:
    """RecipeError naming the setting unless `target` is a reward model's run, adapter or merged folder."""
    from pipeline.models.artifacts import resolve_target
    from pipeline.models.heads import auto_class_for, is_reward_adapter

    where = f"{source}: grpo.rewards model {target}"
    if not Path(target).expanduser().is_dir():
        raise RecipeError(
            f"{where} is not a folder; give a run of train.stage: reward (runs/reward-small-<time>)."
        )
    try:
        ref = resolve_target(target)
    except AssetError as exc:
        raise RecipeError(f"{where}: {exc}") from None
    if ref.adapter_dir is not None:
        reward = is_reward_adapter(ref.adapter_dir)
    else:
        reward = auto_class_for(ref.tokenizer_dir).__name__ == "AutoModelForSequenceClassification"
    if not reward:
        raise RecipeError(
            f"{where} is not a reward model (its adapter or model has no score head); train one with "
            "train.stage: reward (recipes/reward-small.yaml)."
        )


class ModelReward:
    """trl's reward-function interface over a reward model: one score per completion."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.__name__ = f"reward_model:{Path(target).name}"  # the name trl logs the reward under
        self._loaded: Any = None

    def _load(self) -> Any:
        if self._loaded is None:
            from pipeline.models.artifacts import load_target

            loaded = load_target(self.target)
            model = loaded.model
            if hasattr(model, "merge_and_unload"):
                model = model.merge_and_unload()
            model.config.pad_token_id = loaded.tokenizer.pad_token_id
            self._loaded = (model.eval(), loaded.tokenizer)
        return self._loaded

    def __call__(self, prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        """The reward model's score of each prompt + completion."""
        from pipeline.data.formatting import render
        from pipeline.models.heads import score_rows

        model, tokenizer = self._load()
        rows = []
        for prompt, completion in zip(prompts, completions, strict=True):
            # trl passes messages for conversational prompts (a completion is then a list of messages too)
            messages = (
                list(prompt) if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            )
            if isinstance(completion, list):
                messages.extend(completion)
            else:
                messages.append({"role": "assistant", "content": str(completion)})
            text = render(tokenizer, messages)
            rows.append(list(tokenizer(text, add_special_tokens=False)["input_ids"]))
        return score_rows(model, rows, SCORING_BATCH, tokenizer.pad_token_id)
