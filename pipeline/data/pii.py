"""Personal data and secrets in text: find them (with checksums where the format has one), mask them for
reports, and replace them with placeholders.

Kinds, in the order they claim text (an earlier kind wins where matches overlap):
private_key (PEM blocks), hf_token (hf_...), openai_key (sk-...), aws_access_key (AKIA/ASIA...),
iban (mod-97 checked), payment_card (13-19 digits, Luhn checked), email, phone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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
