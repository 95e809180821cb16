"""lm-evaluation-harness around a model this process already holds: the one place that touches lm-eval's
model interface (its Hugging Face wrapper and the `_loglikelihood_tokens` hook TemplateLM subclasses
implement; tests/unit/evaluation/test_harness.py is the canary for both).

`PackedLM` is lm-eval's `HFLM` given the loaded model (a PeftModel included, so the adapter is scored without
a second load) and its tokenizer; tokenization, few-shot prompts, generation and metrics stay lm-eval's, and
only the log-likelihoods are ours: the options of one question share one pass over the question
(pipeline.evaluation.choices), the rest go through pipeline.evaluation.perplexity's packed,
per-example-attention scoring (no padding, the vocabulary projection only at the continuation's positions).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pipeline.evaluation.choices import shared_context_loglikelihoods

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LOGGERS = ("lm_eval", "lm-eval")


@contextlib.contextmanager
def quiet_harness() -> Iterator[None]:
    """lm-eval's INFO/WARNING lines (seeds, 'pretrained is not a str', task listings) and its progress bars
    (written to sys.stderr; logging handlers keep the real stream) hidden for the block: the run's own lines
    say what is evaluated, and an error still propagates."""
    loggers = [logging.getLogger(name) for name in LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def harness_lm(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int, packed: bool = True
) -> Any:
    """An lm-eval LM over `model`: `PackedLM` (packed=True) or lm-eval's own HFLM (the bench's baseline)."""
    from lm_eval.models.huggingface import HFLM

    class PackedLM(HFLM):
        """HFLM whose log-likelihoods come from the packed scoring path."""

        def _loglikelihood_tokens(
            self,
            requests: list[tuple[tuple[str, str], list[int], list[int]]],
            disable_tqdm: bool = False,
            override_bs: int | None = None,
        ) -> list[tuple[float, bool]]:
            pairs = [(context, continuation) for _, context, continuation in requests]
            return shared_context_loglikelihoods(
                self.model, pairs, batch_size=override_bs or int(self.batch_size)
            )

    with quiet_harness():
        return (PackedLM if packed else HFLM)(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=batch_size,
            max_length=int(getattr(model.config, "max_position_embeddings", 0) or 2048),
        )
