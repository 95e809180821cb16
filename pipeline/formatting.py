"""Render conversations with the chat template and mark which tokens carry the loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]


def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool = False) -> str:
    """The chat template applied to messages, as text."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of every assistant turn.

    A span runs from the end of the generation prompt before the turn to the end of the turn as the
    template renders it, so it includes the end-of-turn token. Works for templates without
    `{% generation %}` markers, provided rendering a prefix of the conversation gives a prefix of the text.
    """
    full = render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:index], add_generation_prompt=True) if index else ""
        upto = render(tokenizer, messages[: index + 1])
        if not (full.startswith(upto) and upto.startswith(prompt)):
            raise DataError(
                f"turn {index}: the chat template renders this conversation inconsistently (a prefix of the "
                "conversation is not a prefix of its rendering); check the role order or use another template."
            )
        spans.append((len(prompt), len(upto)))
    return full, spans


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    max_length: int,
    loss_on: str = "assistant",
) -> dict[str, Any]:
    """Token ids and a 0/1 loss mask (`assistant_masks`) for one conversation, truncated to max_length.

    loss_on: 'assistant' trains every assistant turn, 'completion' only the last one, 'all' every token.
    The returned dict also has `num_tokens` (before truncation) for audits and statistics.
    """
    text, spans = assistant_spans(tokenizer, messages)
    if loss_on == "completion":
        spans = spans[-1:]
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoding["input_ids"]
    if loss_on == "all":
        mask = [1] * len(ids)
    else:
        mask = [int(any(start <= begin < end for start, end in spans)) for begin, _ in encoding["offset_mapping"]]
    return {"input_ids": ids[:max_length], "assistant_masks": mask[:max_length], "num_tokens": len(ids)}


def tokenize_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> dict[str, Any]:
    """Token ids for plain text (continued pre-training): every token, and a closing EOS, carries the loss."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": ids[:max_length], "assistant_masks": [1] * min(len(ids), max_length), "num_tokens": len(ids)}


def prompt_messages(messages: Messages) -> tuple[Messages, str]:
    """Split a conversation into the prompt (all turns before the last assistant turn) and its reference answer."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return messages, ""
    return messages[:last], messages[last]["content"]
