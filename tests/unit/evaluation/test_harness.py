"""lm-eval's model interface as pipeline.evaluation.harness uses it (the canary of its private hook), and the
packed log-likelihoods against lm-eval's own Hugging Face wrapper on the same model and requests."""

from __future__ import annotations

import inspect
from importlib.metadata import version
from typing import Any

import pytest
import torch

from tests.conftest import build_tiny_model

LM_EVAL = f"lm-eval {version('lm-eval')}"


def test_canary_hflm_hook_and_constructor() -> None:
    from lm_eval.api.model import TemplateLM
    from lm_eval.models.huggingface import HFLM

    hook = inspect.signature(HFLM._loglikelihood_tokens)
    assert list(hook.parameters)[:3] == ["self", "requests", "disable_tqdm"], f"{LM_EVAL}: {hook}"
    assert "_loglikelihood_tokens" in TemplateLM.__abstractmethods__, LM_EVAL
    init = inspect.signature(HFLM.__init__).parameters
    assert {"pretrained", "tokenizer", "batch_size", "max_length"} <= set(init), LM_EVAL


def _requests(texts: list[tuple[str, str]]) -> list[Any]:
    from lm_eval.api.instance import Instance

    return [Instance("loglikelihood", {}, pair, index) for index, pair in enumerate(texts)]


PAIRS = [
    ("Question: what is the answer?\nAnswer:", " the cat sat"),
    ("Hello there", " friend"),
    ("The quick brown fox jumps over the lazy", " dog and runs away from the farmer"),
    ("A", " b"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_loglikelihoods_equal_lm_evals_own_wrapper(tiny_tokenizer: Any, dtype: torch.dtype) -> None:
    from pipeline.evaluation.harness import harness_lm

    model = build_tiny_model(len(tiny_tokenizer), seed=3).to(dtype)
    ours = harness_lm(model, tiny_tokenizer, batch_size=3).loglikelihood(_requests(PAIRS))
    theirs = harness_lm(model, tiny_tokenizer, batch_size=3, packed=False).loglikelihood(_requests(PAIRS))
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2  # bf16: the two batch layouts round differently
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs, strict=True):
        assert a < 0 and abs(a - b) <= tolerance * abs(b), (a, b)
        if dtype == torch.float32:
            assert greedy_a == greedy_b


def test_options_sharing_a_context_equal_lm_evals_own_wrapper(tiny_tokenizer: Any) -> None:
    from pipeline.evaluation.harness import harness_lm

    model = build_tiny_model(len(tiny_tokenizer), seed=4)
    question = "Question: which one is the animal?\nAnswer:"
    options = [" the cat", " a big dog running", " stone", " the quick brown fox jumps"]
    pairs = [(question, o) for o in options] + [("Hello there", " friend"), ("Hello there", " x")]
    ours = harness_lm(model, tiny_tokenizer, batch_size=4).loglikelihood(_requests(pairs))
    theirs = harness_lm(model, tiny_tokenizer, batch_size=4, packed=False).loglikelihood(_requests(pairs))
    for (a, greedy_a), (b, greedy_b) in zip(ours, theirs, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b) and greedy_a == greedy_b, (a, b)
    assert len({round(a, 6) for a, _ in ours}) == len(pairs)  # distinct options, distinct scores


def test_greedy_flag_is_true_when_the_continuation_is_the_argmax(tiny_tokenizer: Any) -> None:
    from pipeline.evaluation.perplexity import loglikelihoods

    model = build_tiny_model(len(tiny_tokenizer), seed=1)
    context = tiny_tokenizer("Hello there")["input_ids"]
    with torch.no_grad():
        best = int(model(torch.tensor([context])).logits[0, -1].argmax())
    other = (best + 1) % len(tiny_tokenizer)
    (top, is_top), (low, is_low) = loglikelihoods(model, [(context, [best]), (context, [other])])
    assert is_top and not is_low and top > low
    assert model.training is False
