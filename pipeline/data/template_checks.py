"""When a record cannot be rendered, tell a bad record from a recipe setting that fails every record.

Small probe conversations show whether the chat template renders plain turns, a system turn and tool
calls at all; if it does not, the error names model.chat_template or data.system_prompt, not the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.config.templates import names_hint, shipped_name
from pipeline.data.formatting import Messages, TemplateMismatch, Tools, assistant_spans
from pipeline.errors import RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PLAIN: Messages = [
    {"role": "user", "content": "What is 6 times 7?"},
    {"role": "assistant", "content": "It is 42."},
]
SYSTEM: Messages = [{"role": "system", "content": "Answer briefly."}, *PLAIN]
PROBE_TOOLS: Tools = [
    {
        "type": "function",
        "function": {
            "name": "multiply",
            "description": "Multiply two numbers.",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            },
        },
    }
]
TOOL_CALLS: Messages = [
    PLAIN[0],
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 6, "b": 7}}}],
    },
    {"role": "tool", "content": "42", "name": "multiply"},
    PLAIN[1],
]


def template_label(tokenizer: PreTrainedTokenizerBase) -> str:
    """How errors name the template in use: a shipped one by name, else the model's own."""
    text = tokenizer.chat_template
    name = shipped_name(text) if isinstance(text, str) else None
    return f"'{name}'" if name else (tokenizer.name_or_path or "the model")


def _failure(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, tools: Tools | None = None
) -> str | None:
    """Why the template cannot render a probe conversation (None when it can)."""
    try:
        assistant_spans(tokenizer, messages, tools)
    except TemplateMismatch as exc:
        return str(exc)
    return None


def recipe_error(
    tokenizer: PreTrainedTokenizerBase, record: dict[str, Any], verdicts: dict[str, str | None]
) -> RecipeError | None:
    """The recipe-level error behind a record the template failed to render, or None when the record
    itself is to blame. `verdicts` caches the probes' results across the records of one split."""

    def failure(kind: str, messages: Messages, tools: Tools | None = None) -> str | None:
        if kind not in verdicts:
            verdicts[kind] = _failure(tokenizer, messages, tools)
        return verdicts[kind]

    label = template_label(tokenizer)
    why = failure("plain", PLAIN)
    if why:
        return RecipeError(
            f"model.chat_template: the chat template of {label} cannot render a plain user/assistant "
            f"conversation ({why}); {names_hint()}."
        )
    uses_tools = record.get("tools") or any(
        m.get("tool_calls") or m["role"] == "tool" for m in record.get("messages", [])
    )
    why = failure("tools", TOOL_CALLS, PROBE_TOOLS) if uses_tools else None
    if why:
        return RecipeError(
            f"model.chat_template: the chat template of {label} cannot render tool calls and tool outputs "
            f"({why}); set model.chat_template: qwen or chatml (shipped templates with tool support)."
        )
    why = failure("system", SYSTEM) if record.get("system_prompt") else None
    if why:
        return RecipeError(
            f"data.system_prompt: the chat template of {label} does not accept a system turn ({why}); "
            "remove data.system_prompt, or set model.chat_template to a template that takes one "
            "(gemma folds it into the first user turn; chatml, llama3, phi3 and qwen have a system role)."
        )
    return None
