"""Text generation for evaluation, generate, chat and serve: batched, greedy or sampled, or assisted."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.data.formatting import Messages, Tools, render
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 means greedy (top_p/top_k/min_p then do not apply)."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule} (got {value})"
            for name, value, ok, rule in (
                ("max_new_tokens", self.max_new_tokens, self.max_new_tokens >= 1, ">= 1"),
                ("temperature", self.temperature, 0 <= self.temperature <= 10, "in [0, 10]"),
                ("top_p", self.top_p, 0 < self.top_p <= 1, "in (0, 1]"),
                ("top_k", self.top_k, self.top_k >= 0, ">= 0"),
                ("min_p", self.min_p, 0 <= self.min_p <= 1, "in [0, 1]"),
                ("repetition_penalty", self.repetition_penalty, self.repetition_penalty > 0, "> 0"),
                ("n", self.n, self.n >= 1, ">= 1"),
            )
            if not ok
        ]
        if any(not s for s in self.stop):
            problems.append("stop strings must not be empty")
        if problems:
            raise PipelineError(f"sampling: {'; '.join(problems)}.")

    @property
    def greedy(self) -> bool:
        """True when decoding picks the most likely token at every step."""
        return self.temperature == 0

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `model.generate`."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
        }
        if not self.greedy:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
            if self.top_k:
                kwargs["top_k"] = self.top_k
            if self.min_p:
                kwargs["min_p"] = self.min_p
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None, min_p=None)
        if self.n > 1:
            kwargs["num_return_sequences"] = self.n
        if self.stop:
            kwargs["stop_strings"] = list(self.stop)
        return kwargs


@dataclass
class Completion:
    """One generated answer: its text, why it ended ("stop": EOS or stop string; "length") and its tokens."""

    text: str
    finish_reason: str
    tokens: int


@dataclass
class Generations:
    """Generated texts (the first sample per prompt), all samples, token counts and wall time (seconds)."""

    texts: list[str]
    new_tokens: int
    seconds: float
    completions: list[list[Completion]] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return self.new_tokens / self.seconds if self.seconds else 0.0


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text up to the earliest stop string (excluded, as OpenAI does) and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token id that ends a turn: the generation config's EOS id(s) and the tokenizer's."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {int(i) for i in ids if i is not None}


def render_prompts(
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[Messages],
    tools: list[Tools | None] | None = None,
) -> list[str]:
    """Each conversation (ending in a user turn or a tool output) rendered by the chat template with the
    generation prompt; tools[i] is conversation i's tool list (what a tool-calling record offered)."""
    offered = tools or [None] * len(conversations)
    return [
        render(tokenizer, messages, add_generation_prompt=True, tools=listed)
        for messages, listed in zip(conversations, offered, strict=True)
    ]


def assisted_kwargs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sampling: Sampling,
    assistant_model: PreTrainedModel | None,
    assistant_tokenizer: PreTrainedTokenizerBase | None,
) -> dict[str, Any]:
    """`generate` arguments for assisted (speculative) decoding; another vocabulary needs both tokenizers."""
    if assistant_model is None:
        return {}
    if sampling.n > 1:
        raise PipelineError(
            "assisted decoding generates one sample per prompt; drop the assistant or use n=1."
        )
    kwargs: dict[str, Any] = {"assistant_model": assistant_model}
    if assistant_tokenizer is not None and assistant_tokenizer.get_vocab() != tokenizer.get_vocab():
        kwargs["assistant_tokenizer"] = assistant_tokenizer
    return kwargs


def _split_row(row: torch.Tensor, eos: set[int], pad: int | None) -> tuple[list[int], int, bool]:
    """The answer's token ids, the tokens generated (EOS included) and whether it ended before the limit."""
    ids = row.tolist()
    for index, token in enumerate(ids):
        if token in eos:
            return ids[:index], index + 1, True
        if token == pad:  # rows that stopped on a stop string are padded while the others go on
            return ids[:index], index, True
    return ids, len(ids), False


def cancel_criteria(events: list[threading.Event], per_prompt: int = 1) -> Any:
    """Stopping criteria ending row i once events[i // per_prompt] is set (its client is gone)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            done = [events[row // per_prompt].is_set() for row in range(input_ids.shape[0])]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    sampling: Sampling,
    limits: list[int] | None = None,
    cancelled: list[threading.Event] | None = None,
    extra: dict[str, Any] | None = None,
    add_special_tokens: bool = False,
    strip: bool = False,
    streamer: Any = None,
) -> tuple[list[list[Completion]], list[int]]:
    """One left-padded `generate` call over prompts: each prompt's samples and prompt length in tokens.

    limits[i] caps prompt i's new tokens (default: sampling.max_new_tokens); the batch decodes up to the
    largest, and a shorter-limited row is cut, which for greedy decoding gives what it alone would have.
    cancelled[i] set ends prompt i's rows at the next token; streamer gets the tokens as they come (see
    stream.BatchStreamer). The tokenizer must pad on the left.
    """
    import torch

    limits = limits or [sampling.max_new_tokens] * len(prompts)
    settings = replace(sampling, max_new_tokens=max(limits))
    eos, pad = eos_token_ids(model, tokenizer), tokenizer.pad_token_id
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens).to(
        model.device
    )
    stopping = cancel_criteria(cancelled, sampling.n) if cancelled else None
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            **settings.generate_kwargs(),
            **(extra or {}),
            pad_token_id=pad,
            tokenizer=tokenizer,
            stopping_criteria=stopping,
            streamer=streamer,
        )
    generated = output[:, inputs["input_ids"].shape[1] :].cpu()
    completions: list[list[Completion]] = [[] for _ in prompts]
    for row_index, row in enumerate(generated):
        index = row_index // sampling.n
        ids, tokens, ended = _split_row(row[: limits[index]], eos, pad)
        text, stopped = cut_at_stop(tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
        finish = "stop" if ended or stopped else "length"
        completions[index].append(Completion(text.strip() if strip else text, finish, tokens))
    lengths = [int(n) for n in inputs["attention_mask"].sum(dim=1)]
    return completions, lengths


def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    sampling: Sampling | None = None,
    batch_size: int = 8,
    assistant_model: PreTrainedModel | None = None,
    assistant_tokenizer: PreTrainedTokenizerBase | None = None,
    add_special_tokens: bool = False,
    strip: bool = False,
    cancelled: threading.Event | None = None,
) -> Generations:
    """Continue each prompt text; prompts are left-padded in batches (one at a time when assisted); a set
    `cancelled` event ends the generation at the next token."""
    import torch

    sampling = sampling or Sampling()
    extra = assisted_kwargs(model, tokenizer, sampling, assistant_model, assistant_tokenizer)
    if extra:
        batch_size = 1  # transformers' assisted decoding takes one sequence at a time
    if sampling.seed is not None:
        torch.manual_seed(sampling.seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    completions: dict[int, list[Completion]] = {}
    prompt_tokens: dict[int, int] = {}
    start = time.perf_counter()
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    was_training = model.training
    model.eval()
    try:
        for offset in range(0, len(order), batch_size):
            batch_ids = order[offset : offset + batch_size]
            samples, lengths = generate_batch(
                model,
                tokenizer,
                [prompts[i] for i in batch_ids],
                sampling,
                cancelled=[cancelled] * len(batch_ids) if cancelled is not None else None,
                extra=extra,
                add_special_tokens=add_special_tokens,
                strip=strip,
            )
            completions.update(zip(batch_ids, samples, strict=True))
            prompt_tokens.update(zip(batch_ids, lengths, strict=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    ordered = [completions[i] for i in range(len(prompts))]
    return Generations(
        texts=[samples[0].text for samples in ordered],
        new_tokens=sum(c.tokens for samples in ordered for c in samples),
        seconds=time.perf_counter() - start,
        completions=ordered,
        prompt_tokens=[prompt_tokens[i] for i in range(len(prompts))],
    )


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[Messages],
    sampling: Sampling | None = None,
    batch_size: int = 8,
    assistant_model: PreTrainedModel | None = None,
    assistant_tokenizer: PreTrainedTokenizerBase | None = None,
    tools: list[Tools | None] | None = None,
) -> Generations:
    """Answer each conversation (ending in a user turn) with the model, rendered by its chat template (with
    tools[i], the tools conversation i may call)."""
    return generate_text(
        model,
        tokenizer,
        render_prompts(tokenizer, conversations, tools),
        sampling,
        batch_size=batch_size,
        assistant_model=assistant_model,
        assistant_tokenizer=assistant_tokenizer,
        strip=True,
    )
