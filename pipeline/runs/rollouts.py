"""GRPO's and RLOO's rollouts: each generation round's prompt groups, every completion and its rewards.

rollouts.jsonl in the run folder, one JSON object a line, appended and flushed after each round (rank 0):
{"schema_version": 1, "step": N, "groups": [{"prompt": TEXT, "flat": BOOL, "completions": [{"text": TEXT,
"rewards": {FUNCTION: VALUE}, "total": WEIGHTED_SUM}]}]}. A group is `flat` when every completion got the same
total: it has no advantage and teaches nothing (what trl's frac_reward_zero_std counts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROLLOUTS = "rollouts.jsonl"
SCHEMA_VERSION = 1
MAX_TEXT = 600  # characters of a prompt or completion kept (the file stays small over long runs)
MAX_BYTES = 8 << 20  # rounds stop being recorded once the file reaches this size


def group_rollouts(
    prompts: list[str], texts: list[str], rewards: dict[str, list[float]], weights: list[float]
) -> list[dict[str, Any]]:
    """Consecutive completions of the same prompt as one group, each completion with its rewards and total."""
    names = list(rewards)
    groups: list[dict[str, Any]] = []
    for index, (prompt, text) in enumerate(zip(prompts, texts, strict=True)):
        values = {name: float(rewards[name][index]) for name in names}
        total = sum(w * v for w, v in zip(weights, values.values(), strict=True))
        if not groups or groups[-1]["prompt"] != prompt[:MAX_TEXT]:
            groups.append({"prompt": prompt[:MAX_TEXT], "completions": []})
        groups[-1]["completions"].append({"text": text[:MAX_TEXT], "rewards": values, "total": total})
    for group in groups:
        totals = [c["total"] for c in group["completions"]]
        group["flat"] = len(totals) > 1 and max(totals) - min(totals) < 1e-9
    return groups


def append_round(folder: Path, step: int, groups: list[dict[str, Any]]) -> None:
    """Append one generation round to the run's rollouts.jsonl (nothing once it has reached MAX_BYTES)."""
    path = Path(folder) / ROLLOUTS
    if path.is_file() and path.stat().st_size >= MAX_BYTES:
        return
    line = json.dumps({"schema_version": SCHEMA_VERSION, "step": step, "groups": groups}, ensure_ascii=False)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()


def read_rollouts(folder: Path, last: int = 20) -> list[dict[str, Any]]:
    """The last `last` recorded rounds, newest first (none for runs that sample nothing); a line cut short by a
    run still writing is skipped."""
    path = Path(folder) / ROLLOUTS
    if not path.is_file():
        return []
    rounds = []
    for line in path.read_text(encoding="utf-8").splitlines()[-last:]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("groups"), list):
            rounds.append(item)
    return rounds[::-1]
