"""Personal data and secrets in text and records: find them (with checksums where the format has one), mask
them for reports, and replace them with placeholders.

Tool-call arguments and `tools` schemas are JSON values: texts_in and redact_value reach every string (and
integer, as its digits) inside them.

Kinds, in the order they claim text (an earlier kind wins where matches overlap):
private_key (PEM blocks), hf_token (hf_...), openai_key (sk-...), aws_access_key (AKIA/ASIA...),
iban (mod-97 checked), payment_card (13-19 digits, Luhn checked), email, phone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# What of a record's tools the template shows as free text; names stay, since calls and templates use them.
TOOL_TEXT = ("description", "parameters")
PLACEHOLDERS = {
    "private_key": "[PRIVATE_KEY]",
    "hf_token": "[HF_TOKEN]",
    "openai_key": "[API_KEY]",
    "aws_access_key": "[AWS_KEY]",
    "iban": "[IBAN]",
    "payment_card": "[CARD]",
    "email": "[EMAIL]",
    "phone": "[PHONE]",
}


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn checksum used by payment card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """True when an IBAN (spaces allowed) passes the ISO 13616 mod-97 check."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _card_ok(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    # Issuer ranges start with 2-6 (Mastercard 2-series, Amex/Diners 3, Visa 4, Mastercard 5, Discover 6).
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and luhn_valid(digits)


def _phone_ok(value: str) -> bool:
    return 9 <= sum(c.isdigit() for c in value) <= 15


@dataclass(frozen=True)
class Pattern:
    """One kind of personal data or secret: a regular expression and an optional validity check."""

    kind: str
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None


PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "private_key",
        re.compile(
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S
        ),
    ),
    Pattern("hf_token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    Pattern("openai_key", re.compile(r"\bsk-(?:proj-|ant-|svcacct-)?[A-Za-z0-9_-]{20,}")),
    Pattern("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    Pattern("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"), iban_valid),
    Pattern("payment_card", re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])"), _card_ok),
    Pattern("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    # International (+CC ...), bracketed area codes, or the North American 3-3-4 shape; never part of an
    # IP address or a longer number.
    Pattern(
        "phone",
        re.compile(
            r"(?<![\w.+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
            r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
            r"|\d{3}[ .-]\d{3}[ .-]\d{4})(?![\w.]*\d)"
        ),
        _phone_ok,
    ),
)


# Text none of the patterns can match lacks all of these: a quick test that skips the eight scans for most
# text (a phone or card number needs 9+ digits with at most two separator characters between digits).
MAYBE = re.compile(r"-----BEGIN|hf_|sk-|AKIA|ASIA|[A-Z]{2}\d\d|@|\d(?:[ .()-]{0,2}\d){8}")


@dataclass(frozen=True)
class Finding:
    """One match: its kind, character span in the scanned text, and the matched value."""

    kind: str
    start: int
    end: int
    value: str


def find_pii(text: str) -> list[Finding]:
    """Every personal-data or secret match in text, non-overlapping, in text order."""
    found: list[Finding] = []
    if not MAYBE.search(text):
        return found
    for pattern in PATTERNS:
        for match in pattern.regex.finditer(text):
            start, end = match.span()
            if any(start < f.end and f.start < end for f in found):
                continue
            if pattern.check is None or pattern.check(match.group()):
                found.append(Finding(pattern.kind, start, end, match.group()))
    return sorted(found, key=lambda f: f.start)


def mask(value: str) -> str:
    """A report-safe form of a match: first and last characters kept, the middle starred."""
    if value.startswith("-----BEGIN"):
        return value.splitlines()[0] + " ... (masked)"
    keep = 2 if len(value) >= 12 else 1
    return value[:keep] + "*" * min(len(value) - 2 * keep, 12) + value[-keep:]


def redact(text: str, findings: list[Finding] | None = None) -> str:
    """Text with every finding replaced by its kind's placeholder (e.g. [EMAIL])."""
    findings = find_pii(text) if findings is None else findings
    for finding in sorted(findings, key=lambda f: -f.start):
        text = text[: finding.start] + PLACEHOLDERS[finding.kind] + text[finding.end :]
    return text


def texts_in(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, text) of every string inside a JSON value, and of every integer as its digits (a card number
    may be one); paths read like `arguments.contact.email` and `tools[0].function.description`."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from texts_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from texts_in(item, f"{path}[{index}]")


def redact_value(value: Any) -> Any:
    """A copy of a JSON value with every finding in its strings replaced by placeholders; an integer that
    is one becomes its placeholder (a string), since keeping the number would keep the value."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int) and not isinstance(value, bool):
        digits = str(value)
        return value if not find_pii(digits) else redact(digits)
    if isinstance(value, dict):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    return value


def _fields(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) per field: turns (tool outputs among them), tool-call arguments and the descriptions
    and parameter schemas of the record's tools. Turns are named by role and number ('assistant turn 1'),
    since message indices shift when data.system_prompt adds a system turn."""
    if "text" in record:
        return [("text", record["text"])]
    seen: Counter[str] = Counter()
    fields = []
    for message in record["messages"]:
        seen[message["role"]] += 1
        turn = f"{message['role']} turn {seen[message['role']]}"
        fields.append((turn, message["content"]))
        for index, call in enumerate(message.get("tool_calls", [])):
            fields += texts_in(call["function"]["arguments"], f"{turn} tool_calls[{index}].arguments")
    for index, tool in enumerate(record.get("tools") or []):
        function = tool["function"]
        for key in TOOL_TEXT:
            fields += texts_in(function.get(key), f"tools[{index}].function.{key}")
    return fields


def scan_pii(records: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Counts of personal data and secrets per kind, with up to `limit` masked examples per kind and their
    locations."""
    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    affected = 0
    for record in records:
        hit = False
        for field, text in _fields(record):
            for finding in find_pii(text):
                hit = True
                counts[finding.kind] += 1
                shown = examples.setdefault(finding.kind, [])
                if len(shown) < limit:
                    shown.append(f"{record.get('location', 'record')} ({field}): {mask(finding.value)}")
        affected += hit
    return {"counts": dict(counts), "records": affected, "examples": examples}


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of the record with personal data and secrets replaced by placeholders."""
    if "text" in record:
        return {**record, "text": redact(record["text"])}
    messages = []
    for message in record["messages"]:
        clean = {**message, "content": redact(message["content"])}
        if message.get("tool_calls"):
            clean["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": redact_value(c["function"]["arguments"])}}
                for c in message["tool_calls"]
            ]
        messages.append(clean)
    if not record.get("tools"):
        return {**record, "messages": messages}
    tools = [
        {
            **t,
            "function": {
                **t["function"],
                **{k: redact_value(t["function"][k]) for k in TOOL_TEXT if k in t["function"]},
            },
        }
        for t in record["tools"]
    ]
    return {**record, "messages": messages, "tools": tools}
