"""Tool calling in records: validate OpenAI-style tool calls, tool outputs and per-record tool lists.

An assistant turn may carry `tool_calls` ([{type: function, function: {name, arguments}}], arguments an
object or its JSON string; content may then be null or absent); a `tool` turn carries the output (content,
optional tool_call_id and name); a record may carry `tools` (OpenAI function schemas) for the template to
show. Errors are ValueErrors naming the field; the caller prefixes the record's file:line.
"""

from __future__ import annotations

import json
import re
from typing import Any

# OpenAI allows letters, digits, '_' and '-' (64 at most); dotted names (math.gcd) are common elsewhere.
NAME = re.compile(r"[A-Za-z_][\w.\-]{0,63}")
CALL_SHAPE = "{type: function, function: {name, arguments}}"


def _json_value(value: Any) -> Any:
    """CSV and Parquet cells may hold a list or object as a JSON string."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError(
            f"{field} must be a function name (letters, digits, '_', '-', '.'; at most 64) (got {value!r})"
        )
    return value


def _arguments(value: Any, field: str) -> dict[str, Any]:
    """Arguments as an object; a JSON string (OpenAI's wire form) is parsed."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"{field} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be a JSON object of argument values (got {type(value).__name__})")
    return value


def to_tool_calls(value: Any, field: str) -> list[dict[str, Any]]:
    """Validated tool calls of one assistant turn as [{type: function, function: {name, arguments: {...}}, id?}]."""
    value = _json_value(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"{field} must be a non-empty list of {CALL_SHAPE} objects")
    calls = []
    for index, call in enumerate(value):
        at = f"{field}[{index}]"
        if not isinstance(call, dict):
            raise ValueError(f"{at} must be an object {CALL_SHAPE} (got {type(call).__name__})")
        if call.get("type", "function") != "function":
            raise ValueError(f"{at}.type must be 'function' (got {call.get('type')!r})")
        function = call.get("function")
        if not isinstance(function, dict):
            raise ValueError(f"{at}.function must be an object with name and arguments")
        clean: dict[str, Any] = {
            "type": "function",
            "function": {
                "name": _name(function.get("name"), f"{at}.function.name"),
                "arguments": _arguments(function.get("arguments"), f"{at}.function.arguments"),
            },
        }
        if call.get("id") is not None:
            if not isinstance(call["id"], str):
                raise ValueError(f"{at}.id must be a string (got {type(call['id']).__name__})")
            clean["id"] = call["id"]
        calls.append(clean)
    return calls


def to_tool_output(message: dict[str, Any], field: str, key: str = "content") -> dict[str, Any]:
    """A `tool` turn: its content (a string, may be empty) and optional tool_call_id and name."""
    content = message.get(key)
    if not isinstance(content, str):
        raise ValueError(f"{field}.{key} must be a string, the tool's output (got {type(content).__name__})")
    clean: dict[str, Any] = {"role": "tool", "content": content}
    for key in ("tool_call_id", "name"):
        if message.get(key) is not None:
            if not isinstance(message[key], str):
                raise ValueError(f"{field}.{key} must be a string (got {type(message[key]).__name__})")
            clean[key] = message[key]
    return clean


def from_function_call(value: Any, field: str) -> list[dict[str, Any]]:
    """A ShareGPT `function_call` turn's value ({name, arguments} or a list of them, or its JSON string)
    as validated tool calls."""
    value = _json_value(value)
    calls = value if isinstance(value, list) else [value]
    if not calls or not all(isinstance(c, dict) for c in calls):
        raise ValueError(
            f'{field} must be a JSON object {{"name": ..., "arguments": {{...}}}} (or a list of them)'
        )
    return to_tool_calls([{"type": "function", "function": c} for c in calls], field)


def to_tools(value: Any) -> list[dict[str, Any]]:
    """A record's `tools` as OpenAI function schemas [{type: function, function: {name, description?,
    parameters?}}]; a bare {name, description, parameters} is wrapped."""
    value = _json_value(value)
    if not isinstance(value, list) or not value:
        raise ValueError("tools must be a non-empty list of {type: function, function: {name, parameters}}")
    tools = []
    for index, tool in enumerate(value):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise ValueError(f"{at} must be an object (got {type(tool).__name__})")
        if tool.get("type", "function") != "function":
            raise ValueError(f"{at}.type must be 'function' (got {tool.get('type')!r})")
        function = tool.get("function", tool if "name" in tool else None)
        if not isinstance(function, dict):
            raise ValueError(f"{at}.function must be an object with name, description and parameters")
        _name(function.get("name"), f"{at}.function.name")
        if not isinstance(function.get("description", ""), str):
            raise ValueError(f"{at}.function.description must be a string")
        parameters = function.get("parameters", {})
        if not isinstance(parameters, dict):
            raise ValueError(f"{at}.function.parameters must be a JSON schema object (got {parameters!r})")
        tools.append({"type": "function", "function": dict(function)})
    return tools


def check_tool_turns(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, field: str) -> None:
    """Tool outputs follow a tool-call turn (or another output), their ids match a call of that turn, and
    called functions are among the record's tools when it lists them."""
    known = [t["function"]["name"] for t in tools or []]
    calls: list[dict[str, Any]] = []
    caller = -1
    for index, message in enumerate(messages):
        for number, call in enumerate(message.get("tool_calls", [])):
            name = call["function"]["name"]
            if known and name not in known:
                raise ValueError(
                    f"{field}[{index}].tool_calls[{number}].function.name {name!r} is not among the "
                    f"record's tools ({', '.join(known)})"
                )
        if message.get("tool_calls"):
            calls, caller = message["tool_calls"], index
        elif message["role"] == "tool":
            if caller < 0:
                raise ValueError(
                    f"{field}[{index}] is a tool output with no assistant tool call before it; put the "
                    "assistant turn with tool_calls first"
                )
            ids = [c["id"] for c in calls if "id" in c]
            if ids and message.get("tool_call_id") is not None and message["tool_call_id"] not in ids:
                raise ValueError(
                    f"{field}[{index}].tool_call_id {message['tool_call_id']!r} matches no call of "
                    f"{field}[{caller}] ({', '.join(ids)})"
                )
        else:
            caller = -1


def tool_stats(records: list[dict[str, Any]]) -> dict[str, int]:
    """Counts for the audit: records with tools, tool-call turns, calls, tool outputs, untrained turns."""
    stats = {
        "records_with_tools": 0,
        "tool_call_turns": 0,
        "tool_calls": 0,
        "tool_outputs": 0,
        "untrained": 0,
    }
    for record in records:
        stats["records_with_tools"] += bool(record.get("tools"))
        for message in record.get("messages", []):
            stats["tool_call_turns"] += bool(message.get("tool_calls"))
            stats["tool_calls"] += len(message.get("tool_calls", []))
            stats["tool_outputs"] += message["role"] == "tool"
            stats["untrained"] += message.get("train") is False
    return stats
