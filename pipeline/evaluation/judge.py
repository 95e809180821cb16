"""A judge (eval.judge): any OpenAI-compatible chat endpoint compares the base's and the adapted model's greedy
answers to the same prompts, pairwise, in both orders to cancel position bias.

Each prompt is judged twice: the base's answer as A and the adapted one as B, then swapped. The adapted model
scores 1 for a win, 0.5 for a tie (or a verdict that names neither) and 0 for a loss in each order; the
win rate is the mean over both orders and all prompts, with a 95% Wilson interval over the prompts. A judge
that cannot be reached is recorded as an error with one warning line: it never fails a trained run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from typing import Any

from pipeline.config.training import JudgeSpec
from pipeline.evaluation.embedding import wilson_interval

log = logging.getLogger(__name__)
VERDICT = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)
INSTRUCTION = (
    "You compare two answers to the same user message. Judge helpfulness, correctness and clarity; ignore "
    "which answer comes first and how long it is. Reply with exactly one word: A, B, or tie."
)


def _prompt(question: str, first: str, second: str) -> list[dict[str, str]]:
    content = (
        f"User message:\n{question}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\nWhich answer is better?"
    )
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": content}]


def ask(spec: JudgeSpec, messages: list[dict[str, str]]) -> str:
    """The judge's reply text to one chat request (temperature 0); urllib errors pass through."""
    body = {"model": spec.model, "messages": messages, "max_tokens": spec.max_tokens, "temperature": 0}
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(spec.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        spec.endpoint.rstrip("/") + "/chat/completions", json.dumps(body).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=spec.timeout) as response:
        reply = json.loads(response.read())
    return str(reply["choices"][0]["message"]["content"] or "")


def verdict(text: str) -> str:
    """'A', 'B' or 'tie' from a reply (its first such word); 'none' when it names neither."""
    found = VERDICT.search(text)
    return found.group(1).upper() if found and found.group(1).upper() in "AB" else "tie" if found else "none"


def judge_answers(
    spec: JudgeSpec, questions: list[str], base: list[str], adapted: list[str]
) -> dict[str, Any]:
    """{'win_rate', 'win_rate_ci95', 'n', 'consistent_rate', 'unparsed', 'per_example'} of the adapted
    answers against the base's; {'error': ...} when the judge cannot be reached."""
    points, consistent, unparsed, rows = [], 0, 0, []
    try:
        for question, old, new in zip(questions, base, adapted, strict=True):
            forward = verdict(ask(spec, _prompt(question, old, new)))  # adapted is B
            backward = verdict(ask(spec, _prompt(question, new, old)))  # adapted is A
            score = {"B": 1.0, "A": 0.0}.get(forward, 0.5) + {"A": 1.0, "B": 0.0}.get(backward, 0.5)
            points.append(score / 2)
            consistent += (forward, backward) in (("A", "B"), ("B", "A"), ("tie", "tie"))
            unparsed += (forward == "none") + (backward == "none")
            rows.append({"adapted_as_b": forward, "adapted_as_a": backward, "score": score / 2})
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        message = f"eval.judge: {spec.endpoint} did not answer usably ({exc}); no judge verdicts recorded"
        log.warning(message)
        return {"error": message}
    rate = sum(points) / len(points) if points else None
    return {
        "model": spec.model,
        "win_rate": rate,
        "win_rate_ci95": wilson_interval(rate, len(points)),
        "n": len(points),
        "consistent_rate": consistent / len(points) if points else None,
        "unparsed": unparsed,
        "per_example": rows,
    }
