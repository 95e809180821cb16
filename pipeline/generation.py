"""Text generation shared by evaluation, chat and serve: chat-template prompts, batched, greedy or sampled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.formatting import Messages

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 means greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "repetition_penalty": self.repetition_penalty}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            if self.top_k:
                kwargs["top_k"] = self.top_k
            if self.min_p:
                kwargs["min_p"] = self.min_p
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop:
            kwargs["stop_strings"] = list(self.stop)
        return kwargs


@dataclass
class Generations:
    """Generated texts with their token counts and wall time (seconds)."""

    texts: list[str]
    new_tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return self.new_tokens / self.seconds if self.seconds else 0.0


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[Messages],
    sampling: Sampling | None = None,
    batch_size: int = 8,
) -> Generations:
    """Answer each conversation (ending in a user turn) with the model; prompts are left-padded in batches."""
    import torch

    sampling = sampling or Sampling()
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts: list[str] = []
    new_tokens = 0
    start = time.perf_counter()
    order = sorted(range(len(conversations)), key=lambda i: -len(str(conversations[i])))
    answers: dict[int, str] = {}
    was_training = model.training
    model.eval()
    try:
        for offset in range(0, len(order), batch_size):
            batch_ids = order[offset : offset + batch_size]
            prompts = [
                tokenizer.apply_chat_template(conversations[i], tokenize=False, add_generation_prompt=True)
                for i in batch_ids
            ]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                output = model.generate(
                    **inputs, **sampling.generate_kwargs(), pad_token_id=tokenizer.pad_token_id, tokenizer=tokenizer
                )
            generated = output[:, inputs["input_ids"].shape[1] :]
            for row, index in zip(generated, batch_ids):
                kept = row[row != tokenizer.pad_token_id]
                new_tokens += int(kept.numel()) + int(kept.numel() < row.numel())
                answers[index] = tokenizer.decode(kept, skip_special_tokens=True).strip()
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    texts = [answers[i] for i in range(len(conversations))]
    return Generations(texts=texts, new_tokens=new_tokens, seconds=time.perf_counter() - start)
