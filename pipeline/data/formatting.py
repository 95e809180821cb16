"""Render conversations with the chat template and mark which tokens carry the loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# {role, content} plus, where present, tool_calls (assistant), tool_call_id/name (tool) and train: False.
Messages = list[dict[str, Any]]
Tools = list[dict[str, Any]]


class TemplateMismatch(ValueError):
    """The chat template cannot render a conversation, or renders it in a way masks cannot follow."""


def render(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    add_generation_prompt: bool = False,
    tools: Tools | None = None,
) -> str:
    """The chat template applied to messages (and the record's tools), as text; template errors become
    TemplateMismatch."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except (TemplateError, TypeError) as exc:  # TypeError: a template adding str + None or a list
        raise TemplateMismatch(f"the chat template cannot render this conversation ({exc})") from None


def render_many(
    tokenizer: PreTrainedTokenizerBase, conversations: list[Messages], add_generation_prompt: bool = False
) -> list[str]:
    """render() of many conversations (without tools) in one template call; the same texts, less overhead."""
    from jinja2 import TemplateError

    if not conversations:
        return []
    try:
        return tokenizer.apply_chat_template(
            conversations, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except (TemplateError, TypeError) as exc:
        raise TemplateMismatch(f"the chat template cannot render this conversation ({exc})") from None


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings."""
    if b.startswith(a):  # the usual case (a conversation cut is a prefix of the whole): no character loop
        return len(a)
    size = min(len(a), len(b))
    return next((i for i in range(size) if a[i] != b[i]), size)


def _check_tools_rendered(full: str, messages: Messages, tools: Tools | None) -> None:
    """Templates without tool support drop tool calls, outputs or the tool list without an error."""
    for tool in tools or []:
        if tool["function"]["name"] not in full:
            raise TemplateMismatch(
                f"the chat template does not render the record's tools ({tool['function']['name']} is missing)"
            )
    for index, message in enumerate(messages):
        if message["role"] == "tool" and message["content"].strip() not in full:
            raise TemplateMismatch(f"messages[{index}]: the chat template does not render tool outputs")


def assistant_spans(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, tools: Tools | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of every assistant turn.

    A span runs from the end of the generation prompt before the turn to the end of the turn as the
    template renders it, so it includes the end-of-turn token. Works for templates without
    `{% generation %}` markers: the prompt before each turn must render as a prefix of the conversation.
    The turn ends where the conversation cut after it stops agreeing with the whole conversation, so
    templates that close a finished conversation with an extra EOS (Phi-3) are handled too.
    """
    full = render(tokenizer, messages, tools=tools)
    _check_tools_rendered(full, messages, tools)
    prompts, cuts = span_renders(messages)
    rendered_prompts = {i: render(tokenizer, messages[:i], True, tools) for i in prompts}
    rendered_cuts = {i: render(tokenizer, messages[: i + 1], tools=tools) for i in cuts}
    return full, spans_from(messages, full, rendered_prompts, rendered_cuts)


def span_renders(messages: Messages) -> tuple[list[int], list[int]]:
    """Which renders assistant_spans needs: the prompt before each assistant turn at index i > 0 (messages[:i]
    with the generation prompt) and the conversation cut after each assistant turn but the last message (the
    cut after the last message is the conversation itself)."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    return [i for i in turns if i], [i for i in turns if i < len(messages) - 1]


def spans_from(
    messages: Messages, full: str, prompts: dict[int, str], cuts: dict[int, str]
) -> list[tuple[int, int]]:
    """The character spans of every assistant turn from the renders span_renders asked for (see
    assistant_spans); raises TemplateMismatch when they disagree with the whole conversation."""
    spans: list[tuple[int, int]] = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = prompts.get(index, "")
        end = _common_prefix(cuts[index], full) if index in cuts else len(full)
        if not full.startswith(prompt) or message["content"].strip() not in full[len(prompt) : end]:
            raise TemplateMismatch(
                f"messages[{index}]: the chat template renders this conversation inconsistently (the prompt "
                "before the turn is not a prefix of the conversation, or the turn's text is not where it "
                "should be); check the role order or use another template"
            )
        for call in message.get("tool_calls", []):
            if call["function"]["name"] not in full[len(prompt) : end]:
                raise TemplateMismatch(
                    f"messages[{index}]: the chat template does not render tool calls (the call to "
                    f"{call['function']['name']} is missing from the assistant turn)"
                )
        spans.append((len(prompt), end))
    return spans


def select_spans(
    messages: Messages, spans: list[tuple[int, int]], loss_on: str, prompt_turns: int
) -> list[tuple[int, int]]:
    """The assistant spans that carry the loss: never prompt turns nor turns marked train: false;
    'completion' keeps only the last of the others."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    kept = [
        (turn, span)
        for turn, span in zip(turns, spans, strict=True)
        if turn >= prompt_turns and messages[turn].get("train") is not False
    ]
    if loss_on == "completion" and not prompt_turns:
        kept = kept[-1:]
    return [span for _, span in kept]


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    max_length: int,
    loss_on: str = "assistant",
    prompt_turns: int = 0,
    tools: Tools | None = None,
) -> dict[str, Any]:
    """Token ids and a 0/1 loss mask (`assistant_masks`) for one conversation, truncated to max_length.

    loss_on: 'assistant' trains every assistant turn, 'completion' only the last one (or the completion
    of a prompt/completion record), 'all' every token. The first `prompt_turns` messages and assistant turns
    marked `"train": false` are never trained (except by 'all'); tool outputs are never trained. Also returns `num_tokens` and `num_trained` (both before truncation) for audits and statistics.
    """
    text, spans = trained_spans(tokenizer, messages, loss_on, prompt_turns, tools)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return masked_row(encoding["input_ids"], encoding["offset_mapping"], spans, loss_on, max_length)


def trained_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    loss_on: str = "assistant",
    prompt_turns: int = 0,
    tools: Tools | None = None,
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans that carry the loss (see tokenize_conversation)."""
    text, spans = assistant_spans(tokenizer, messages, tools)
    return text, select_spans(messages, spans, loss_on, prompt_turns)


def masked_row(
    ids: list[int], offsets: Any, spans: list[tuple[int, int]], loss_on: str, max_length: int
) -> dict[str, Any]:
    """The training row of an encoded conversation: a token is trained when it lies wholly inside a trained
    span (never one that straddles its edge); ids and mask truncated to max_length."""
    import numpy as np

    if loss_on == "all":
        mask = np.ones(len(ids), dtype=np.int8)
    else:
        bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        inside = np.zeros(len(ids), dtype=bool)
        for start, end in spans:
            inside |= (bounds[:, 0] >= start) & (bounds[:, 1] <= end)
        mask = inside.astype(np.int8)
    return {
        "input_ids": ids[:max_length],
        "assistant_masks": mask[:max_length].tolist(),
        "num_tokens": len(ids),
        "num_trained": int(mask.sum()),
    }


def tokenize_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> dict[str, Any]:
    """Token ids for plain text (continued pre-training): every token, and a closing EOS, carries the loss."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {
        "input_ids": ids[:max_length],
        "assistant_masks": [1] * min(len(ids), max_length),
        "num_tokens": len(ids),
        "num_trained": len(ids),
    }


def prompt_messages(messages: Messages) -> tuple[Messages, str]:
    """Split a conversation into the prompt (turns before the last assistant turn) and the reference."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None:
        return messages, ""
    return messages[:last], messages[last]["content"]
