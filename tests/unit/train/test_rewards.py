"""GRPO's built-in rewards: what each one scores, on trl's string and conversational completions."""

from __future__ import annotations

import pytest

from pipeline.config.stages import GRPOSpec
from pipeline.train.rewards import exact_match, resolve_rewards, score


def test_exact_match_normalises_case_quotes_and_a_final_stop() -> None:
    completions = ["`Class`.", [{"role": "assistant", "content": " class "}], "a class", "method"]
    assert exact_match(completions, answer=["class", "class", "class", ""]) == [1.0, 1.0, 0.0, 0.0]


def test_weighted_sum_of_regex_and_length() -> None:
    spec = GRPOSpec(
        rewards=[
            {"function": "regex", "pattern": r"^\w+$", "weight": 2.0},
            {"function": "length", "target_chars": 4},
        ]
    )
    functions, weights = resolve_rewards(spec, "unused")
    assert [f.__name__ for f in functions] == ["regex", "length"] and weights == [2.0, 1.0]
    totals = score(functions, weights, ["p"] * 3, ["word", "two words", "xx"], ["", "", ""])
    assert totals == pytest.approx([2.0 + 1.0, 0.0 + 0.0, 2.0 + 0.5])
