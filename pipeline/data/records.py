"""Record formats: detect them, validate every record, and convert each to one conversational form.

Every format becomes {'messages': [...], 'prompt_turns': n} (n leading messages are prompt only,
never trained; 0 = no such limit), with 'tools' when the record lists them and 'system_prompt': True when
data.system_prompt added the system turn, or {'text': ...} for continued pre-training. Messages keep
OpenAI tool calls and tool turns (pipeline.data.tools) and an assistant turn's `"train": false`. Validation raises
ValueError with a message that names the bad field, e.g.
"messages[2].role must be one of user, assistant, system (got 'bot')"; the caller prefixes it
with the record's location (file:line).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.data.formatting import Messages
from pipeline.data.tools import check_tool_turns, from_function_call, to_tool_calls, to_tool_output, to_tools

ROLES = ("user", "assistant", "system", "tool")
FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion", "text")
# ShareGPT speakers (the `from` field) and the role each becomes.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "function_call": "assistant",  # LLaMA-Factory's ShareGPT tool calls and outputs
    "observation": "tool",
    "tool": "tool",
}
# Columns that identify a format, checked in this order.
SIGNATURES: list[tuple[str, tuple[str, ...]]] = [
    ("preference", ("chosen", "rejected")),
    ("unpaired", ("prompt", "completion", "label")),
    ("messages", ("messages",)),
    ("sharegpt", ("conversations",)),
    ("alpaca", ("instruction", "output")),
    ("prompt_completion", ("prompt", "completion")),
    ("text", ("text",)),
    ("prompts", ("prompt",)),
]


def detect_format(record: Any) -> str:
    """The format of a record from its fields; raises ValueError when no known format matches."""
    if isinstance(record, dict):
        for name, columns in SIGNATURES:
            if all(c in record for c in columns):
                return name
    fields = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
    raise ValueError(
        "cannot tell the record format: expected a 'messages', 'conversations', 'instruction'+'output', "
        f"'chosen'+'rejected', 'prompt'+'completion'(+'label'), 'prompt' alone or 'text' field (got {fields or 'no fields'}); set data.train[].format "
        "or map columns with data.train[].columns"
    )


def _text(value: Any, field: str) -> str:
    """Content as a non-empty string; OpenAI content parts [{type: text, text}] are joined."""
    if isinstance(value, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in value):
        value = "".join(str(p.get("text", "")) for p in value)
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string (got {type(value).__name__})")
    if not value.strip():
        raise ValueError(f"{field} is empty")
    return value


def _maybe_json(value: Any) -> Any:
    """CSV and Parquet cells may hold a message list as a JSON string."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def check_roles(messages: Messages, field: str = "messages") -> Messages:
    """Checks every template needs: a system turn only first, and at least one assistant turn."""
    for index, message in enumerate(messages):
        if message["role"] == "system" and index > 0:
            raise ValueError(f"{field}[{index}] is a system turn after the start; put the system turn first")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{field} has no assistant turn to train on")
    if all(m.get("train") is False for m in messages if m["role"] == "assistant"):
        raise ValueError(f"{field}: every assistant turn is marked train: false; nothing would be trained")
    return messages


def _train_flag(message: dict[str, Any], field: str) -> dict[str, Any]:
    """The per-turn `train` flag: kept (as False) only on assistant turns that opt out of the loss."""
    flag = message.get("train", True)
    if not isinstance(flag, bool):
        raise ValueError(f"{field}.train must be true or false (got {flag!r})")
    if message.get("role") != "assistant" and "train" in message:
        raise ValueError(
            f"{field}.train applies to assistant turns only (this is a {message.get('role')} turn)"
        )
    return {} if flag else {"train": False}


def to_message(message: Any, field: str) -> dict[str, Any]:
    """One validated message: {role, content}, tool calls on assistant turns, tool outputs, the train flag."""
    if not isinstance(message, dict):
        raise ValueError(f"{field} must be an object with role and content")
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"{field}.role must be one of {', '.join(ROLES)} (got {role!r})")
    role = ROLES[ROLES.index(role)]  # one shared string per role, not one per message (memory at 1M records)
    flag = _train_flag(message, field)
    if role == "tool":
        return to_tool_output(message, field)
    if message.get("tool_calls"):
        if role != "assistant":
            raise ValueError(
                f"{field}.tool_calls are allowed on assistant turns only (this is a {role} turn)"
            )
        content = message.get("content")
        text = "" if content is None or content == "" else _text(content, f"{field}.content")
        calls = to_tool_calls(message["tool_calls"], f"{field}.tool_calls")
        return {"role": role, "content": text, "tool_calls": calls, **flag}
    return {"role": role, "content": _text(message.get("content"), f"{field}.content"), **flag}


def to_messages(value: Any, field: str = "messages") -> Messages:
    """Validate an OpenAI-style message list [{role, content}] and return a clean copy."""
    value = _maybe_json(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"{field} must be a non-empty list of {{role, content}} objects")
    messages = [to_message(message, f"{field}[{index}]") for index, message in enumerate(value)]
    check_tool_turns(messages, None, field)
    return messages


def from_sharegpt(value: Any) -> Messages:
    """ShareGPT turns [{from: human|gpt|system|function_call|observation, value}] as messages; a
    function_call turn's value is {name, arguments} (or a list, or its JSON string), an observation the
    tool's output."""
    value = _maybe_json(value)
    if not isinstance(value, list) or not value:
        raise ValueError("conversations must be a non-empty list of {from, value} objects")
    messages = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise ValueError(f"conversations[{index}] must be an object with from and value")
        speaker = turn.get("from", turn.get("role"))
        if speaker not in SHAREGPT_ROLES:
            raise ValueError(
                f"conversations[{index}].from must be one of human, gpt, system, function_call, observation "
                f"(got {speaker!r})"
            )
        content = turn.get("value", turn.get("content"))
        role, at = SHAREGPT_ROLES[speaker], f"conversations[{index}]"
        flag = _train_flag({**turn, "role": role}, at)
        if speaker == "function_call":
            calls = from_function_call(content, f"{at}.value")
            messages.append({"role": role, "content": "", "tool_calls": calls, **flag})
        elif role == "tool":
            messages.append(to_tool_output({"value": content}, at, key="value"))
        else:
            messages.append({"role": role, "content": _text(content, f"{at}.value"), **flag})
    check_tool_turns(messages, None, "conversations")
    return messages


def from_alpaca(record: dict[str, Any]) -> Messages:
    """Alpaca {instruction, input, output, system?}: instruction and input form the user turn."""
    instruction = _text(record.get("instruction"), "instruction")
    extra = record.get("input") or ""
    if not isinstance(extra, str):
        raise ValueError(f"input must be a string (got {type(extra).__name__})")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = [
        {"role": "user", "content": user},
        {"role": "assistant", "content": _text(record.get("output"), "output")},
    ]
    if record.get("system"):
        messages.insert(0, {"role": "system", "content": _text(record["system"], "system")})
    return messages


def from_prompt_completion(record: dict[str, Any]) -> tuple[Messages, int]:
    """Prompt/completion as strings or message lists; returns the messages and the number of prompt turns."""
    prompt, completion = _maybe_json(record.get("prompt")), _maybe_json(record.get("completion"))
    if isinstance(prompt, list):
        prompt_messages = to_messages(prompt, "prompt")
    else:
        prompt_messages = [{"role": "user", "content": _text(prompt, "prompt")}]
    if isinstance(completion, list):
        completion_messages = to_messages(completion, "completion")
        if any(m["role"] not in ("assistant", "tool") for m in completion_messages):
            raise ValueError("completion may only hold assistant turns (and tool outputs between them)")
    else:
        completion_messages = [{"role": "assistant", "content": _text(completion, "completion")}]
    return prompt_messages + completion_messages, len(prompt_messages)


def convert(record: Any, fmt: str, system_prompt: str | None = None) -> dict[str, Any]:
    """One record of format `fmt` in conversational form (or {'text'}), with the system prompt injected."""
    if not isinstance(record, dict):
        raise ValueError(f"each record must be an object (got {type(record).__name__})")
    expected = dict(SIGNATURES)[fmt]
    missing = [c for c in expected if c not in record]
    if missing:
        fields = ", ".join(sorted(record)) or "none"
        raise ValueError(f"no '{missing[0]}' field for format {fmt} (fields: {fields})")
    if fmt == "text":
        return {"text": _text(record["text"], "text")}
    prompt_turns = 0
    if fmt == "messages":
        messages = to_messages(record["messages"])
    elif fmt == "sharegpt":
        messages = from_sharegpt(record["conversations"])
    elif fmt == "alpaca":
        messages = from_alpaca(record)
    else:
        messages, prompt_turns = from_prompt_completion(record)
    check_roles(messages)
    converted: dict[str, Any] = {}
    if record.get("tools") is not None:
        converted["tools"] = to_tools(record["tools"])
        check_tool_turns(messages, converted["tools"], "messages" if fmt == "messages" else "conversation")
    if system_prompt and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system_prompt}, *messages]
        converted["system_prompt"] = True  # so a template that refuses system turns can blame the setting
        if prompt_turns:
            prompt_turns += 1
    return {"messages": messages, "prompt_turns": prompt_turns, **converted}
