"""GRPO reward functions named in a recipe (grpo.rewards): the built-ins and the user's own FILE.py:NAME.

Every function takes trl's arguments (prompts, completions, and the data set's columns such as `answer` as
lists, one item per completion) and returns one float per completion. A user file is imported only when the
recipe names it, and `pipeline validate` imports it first (resolve_rewards), so a missing file, a syntax error
or a missing name fails before any weight loads.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config.stages import GRPOSpec, RewardSpec
from pipeline.errors import RecipeError

RewardFunction = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The text of one completion: trl passes a string, or a list of messages for conversational prompts."""
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def normalize(text: str) -> str:
    """Case-folded text without surrounding whitespace, quotes, backticks or a final full stop."""
    return re.sub(r"^[\s`'\"]+|[\s`'\".]+$", "", text).casefold()


def exact_match(completions: list[Any], answer: list[str] | None = None, **_: Any) -> list[float]:
    """1.0 when the completion equals the record's answer after normalize(), else 0.0 (0.0 without an answer)."""
    answers = answer or [""] * len(completions)
    return [
        float(bool(a) and normalize(completion_text(c)) == normalize(a))
        for c, a in zip(completions, answers, strict=True)
    ]


def _regex(pattern: str) -> RewardFunction:
    compiled = re.compile(pattern)

    def regex(completions: list[Any], **_: Any) -> list[float]:
        """1.0 when the completion matches the pattern (re.search), else 0.0."""
        return [float(compiled.search(completion_text(c)) is not None) for c in completions]

    return regex


def _length(target: int) -> RewardFunction:
    def length(completions: list[Any], **_: Any) -> list[float]:
        """1.0 at exactly `target` characters, falling linearly to 0.0 at 0 or 2 x target and beyond."""
        return [max(0.0, 1.0 - abs(len(completion_text(c)) - target) / target) for c in completions]

    return length


def _similarity(model_name: str) -> RewardFunction:
    def similarity(completions: list[Any], answer: list[str] | None = None, **_: Any) -> list[float]:
        """Cosine similarity (sentence-transformers, offline) of the completion to the answer; 0.0 without one."""
        from sentence_transformers import SentenceTransformer

        from pipeline.models.assets import resolve_model

        texts = [completion_text(c) for c in completions]
        answers = answer or [""] * len(texts)
        embedder = _EMBEDDERS.get(model_name)
        if embedder is None:
            embedder = _EMBEDDERS[model_name] = SentenceTransformer(
                str(resolve_model(model_name)), device="cpu"
            )
        left = embedder.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
        right = embedder.encode(
            [a or " " for a in answers], convert_to_tensor=True, normalize_embeddings=True
        )
        return [float(v) if a else 0.0 for v, a in zip((left * right).sum(dim=1), answers, strict=True)]

    return similarity


_EMBEDDERS: dict[str, Any] = {}


def _user_function(reward: RewardSpec, beside: Path | None, source: str) -> RewardFunction:
    """Import FILE.py (as given, else beside the recipe) and return its NAME."""
    file_name, _, name = reward.function.rpartition(":")
    path = Path(file_name).expanduser()
    if not path.is_file() and beside is not None and (beside / file_name).is_file():
        path = beside / file_name
    if not path.is_file():
        raise RecipeError(f"{source}: grpo.rewards: {file_name} not found (looked beside the recipe too).")
    module_name = f"pipeline_user_rewards_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RecipeError(f"{source}: grpo.rewards: cannot import {path}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any error it raises on import is reported as one line
        raise RecipeError(
            f"{source}: grpo.rewards: importing {path} failed ({type(exc).__name__}: {exc})."
        ) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise RecipeError(f"{source}: grpo.rewards: {path} has no function {name}.")
    return function


def resolve_rewards(
    spec: GRPOSpec, embedding_model: str, beside: Path | None = None, source: str = "recipe"
) -> tuple[list[RewardFunction], list[float]]:
    """The recipe's reward functions (named as trl logs them) and their weights."""
    functions: list[RewardFunction] = []
    for reward in spec.rewards:
        if reward.model is not None:
            from pipeline.train.reward_model import ModelReward, check_reward_model

            check_reward_model(reward.model, source)
            function: RewardFunction = ModelReward(reward.model)
        elif reward.function == "exact_match":
            function = exact_match
        elif reward.function == "regex":
            function = _regex(reward.pattern or "")
        elif reward.function == "length":
            function = _length(reward.target_chars or 1)
        elif reward.function == "similarity":
            function = _similarity(embedding_model)
        else:
            function = _user_function(reward, beside, source)
        functions.append(function)
    return functions, [reward.weight for reward in spec.rewards]


def score(
    functions: list[RewardFunction],
    weights: list[float],
    prompts: list[Any],
    completions: list[str],
    answers: list[str],
) -> list[float]:
    """The weighted reward sum of each completion, as trl sums them (without its per-group normalisation)."""
    totals = [0.0] * len(completions)
    for function, weight in zip(functions, weights, strict=True):
        values = function(prompts=prompts, completions=completions, answer=answers)
        totals = [
            t + weight * float(v if v is not None else 0.0) for t, v in zip(totals, values, strict=True)
        ]
    return totals
