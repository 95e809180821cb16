"""A small renderer for the Go-template subset our Modelfile templates use, with Ollama's chat values.

Supported: text, {{ EXPR }}, {{- / -}} trimming, if / else if / else / end, range [$i, $x :=] EXPR,
$var := EXPR, fields (.Role, $.Messages), and the functions eq, ne, and, or, not, len, slice. Enough to check
that a template we emit renders the same text as the run's Jinja template; anything else is a ValueError."""

from __future__ import annotations

import re
from typing import Any

ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.DOTALL)
TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|-?\d+|\$?[A-Za-z_.$][\w.$]*|:=|,')


def _lex(source: str) -> list[tuple[str, str]]:
    """[("text", s) | ("action", body)] with Go's trim markers applied to the neighbouring text."""
    parts: list[tuple[str, str]] = []
    position, trim_next = 0, False
    for match in ACTION.finditer(source):
        text = source[position : match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        parts += [("text", text)] if text else []
        parts.append(("action", match.group(2)))
        position, trim_next = match.end(), bool(match.group(3))
    tail = source[position:]
    tail = tail.lstrip() if trim_next else tail
    return parts + ([("text", tail)] if tail else [])


def _parse(parts: list[tuple[str, str]], stop: tuple[str, ...] = ()) -> tuple[list[Any], str | None]:
    """Nodes up to a stopping action (end/else...), and that action."""
    nodes: list[Any] = []
    while parts:
        kind, body = parts.pop(0)
        if kind == "text":
            nodes.append(("text", body))
        elif body == "end" or body == "else" or body.startswith("else if "):
            if body.split(" ")[0] not in stop:
                raise ValueError(f"unexpected {{{{ {body} }}}}")
            return nodes, body
        elif body.startswith("if "):
            branches, rest = [], body[3:]
            while True:
                inner, ending = _parse(parts, ("end", "else"))
                branches.append((rest, inner))
                if ending == "end":
                    nodes.append(("if", branches, []))
                    break
                if ending == "else":
                    otherwise, _ = _parse(parts, ("end",))
                    nodes.append(("if", branches, otherwise))
                    break
                rest = ending.removeprefix("else if ")
        elif body.startswith("range "):
            head = body[6:]
            names, _, expr = head.rpartition(":=")
            inner, _ = _parse(parts, ("end",))
            nodes.append(("range", [n.strip() for n in names.split(",") if n.strip()], expr.strip(), inner))
        elif re.match(r"^\$\w+\s*:=", body):
            name, expr = body.split(":=", 1)
            nodes.append(("assign", name.strip(), expr.strip()))
        else:
            nodes.append(("out", body))
    if stop:
        raise ValueError("missing {{ end }}")
    return nodes, None


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, (list, dict)) and not value)


def _operand(token: str, dot: Any, root: dict[str, Any], names: dict[str, Any]) -> Any:
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    if token.startswith("$."):
        return root[token[2:]]
    if token.startswith("$"):
        return names[token]
    if token.startswith("."):
        return dot.get(token[1:], "") if isinstance(dot, dict) else ""
    raise ValueError(f"unsupported operand {token}")


FUNCTIONS = {
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
    "and": lambda *a: next((x for x in a if not _truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if _truthy(x)), a[-1]),
    "not": lambda a: not _truthy(a),
    "len": len,
    "slice": lambda x, i=0, j=None: x[i:j],
}


def _evaluate(tokens: list[str], dot: Any, root: dict[str, Any], names: dict[str, Any]) -> Any:
    """Evaluate one command: a function with arguments, or a single operand; (...) nests."""
    values, position = [], 0
    while position < len(tokens):
        token = tokens[position]
        if token == "(":
            depth, end = 1, position + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(tokens[end], 0)
                end += 1
            values.append(("value", _evaluate(tokens[position + 1 : end - 1], dot, root, names)))
            position = end
            continue
        values.append(("func", token) if token in FUNCTIONS else ("value", _operand(token, dot, root, names)))
        position += 1
    if values and values[0][0] == "func":
        return FUNCTIONS[values[0][1]](*(v for _, v in values[1:]))
    if len(values) != 1:
        raise ValueError(f"cannot evaluate {' '.join(tokens)}")
    return values[0][1]


def _run(nodes: list[Any], dot: Any, root: dict[str, Any], names: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "out":
            out.append(str(_evaluate(TOKEN.findall(node[1]), dot, root, names)))
        elif kind == "assign":
            names[node[1]] = _evaluate(TOKEN.findall(node[2]), dot, root, names)
        elif kind == "if":
            chosen = next(
                (body for cond, body in node[1] if _truthy(_evaluate(TOKEN.findall(cond), dot, root, names))),
                node[2],
            )
            _run(chosen, dot, root, dict(names), out)  # variables declared inside end with the block
        elif kind == "range":
            for index, item in enumerate(_evaluate(TOKEN.findall(node[2]), dot, root, names)):
                scope = dict(names)
                for name, value in zip(
                    node[1], (index, item) if len(node[1]) == 2 else (item,), strict=False
                ):
                    scope[name] = value
                _run(node[3], item, root, scope, out)


def render(source: str, values: dict[str, Any]) -> str:
    """Render a template with root values (System, Messages, ...)."""
    nodes, _ = _parse(_lex(source))
    out: list[str] = []
    _run(nodes, values, values, {"$": values}, out)
    return "".join(out)


def ollama_values(messages: list[dict[str, str]], default_system: str | None = None) -> dict[str, Any]:
    """The values Ollama's chat endpoint gives a template: the Modelfile SYSTEM as a first message when the
    conversation has none, consecutive turns of one role joined by a blank line, System = all system turns."""
    if default_system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": default_system}, *messages]
    collated: list[dict[str, str]] = []
    for message in messages:
        if collated and collated[-1]["role"] == message["role"] and message["role"] != "tool":
            collated[-1] = {**collated[-1], "content": collated[-1]["content"] + "\n\n" + message["content"]}
        else:
            collated.append({"role": message["role"], "content": message["content"]})
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    return {
        "System": system,
        "Messages": [{"Role": m["role"], "Content": m["content"]} for m in collated],
    }
