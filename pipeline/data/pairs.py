"""Preference pairs: validate {prompt, chosen, rejected} records and shape them for a preference stage.

A pair becomes {'messages': prompt + chosen, 'prompt_turns': n, 'rejected': [...]}: the SFT view of the
record (prompt and the preferred answer) is what hygiene, audits and the SFT-style evaluation read, and the
rejected answer rides along. `prompt`, `chosen` and `rejected` may be strings or message lists; without a
`prompt`, `chosen` and `rejected` are whole conversations and their shared leading turns are the prompt.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.data.formatting import Messages, TemplateMismatch, render
from pipeline.data.records import to_messages
from pipeline.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
PAIR_FORMATS = ("preference",)


def _turns(value: Any, field: str, role: str) -> Messages:
    """A string as one turn of `role`, or a validated message list; plain {role, content} turns only."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{field} is empty")
        return [{"role": role, "content": value}]
    if value is None:
        raise ValueError(f"{field} is missing")
    messages = to_messages(value, field)
    for index, message in enumerate(messages):
        if message.get("tool_calls") or message["role"] == "tool":
            raise ValueError(f"{field}[{index}]: tool calls and tool outputs are not supported in pairs")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _split_shared_prefix(chosen: Messages, rejected: Messages) -> tuple[Messages, Messages, Messages]:
    """(prompt, chosen answer, rejected answer) of two whole conversations that share their leading turns."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while (
        shared and chosen[shared - 1]["role"] == "assistant"
    ):  # an answer starts at the first assistant turn
        shared -= 1
    if shared == 0:
        raise ValueError(
            "chosen and rejected share no leading prompt turns; add a 'prompt' field or start both "
            "conversations with the same user turn"
        )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _check_answer(answer: Messages, field: str) -> None:
    if not answer:
        raise ValueError(f"{field} has no answer after the shared prompt")
    for index, message in enumerate(answer):
        if message["role"] != "assistant":
            raise ValueError(
                f"{field}: the answer may hold assistant turns only (turn {index} is {message['role']})"
            )


def convert_pair(record: Any, system_prompt: str | None = None) -> dict[str, Any]:
    """One preference record in the form above; ValueError names the field (the caller adds file:line)."""
    if not isinstance(record, dict):
        raise ValueError(f"each record must be an object (got {type(record).__name__})")
    if "prompt" in record:
        prompt = _turns(record["prompt"], "prompt", "user")
        chosen = _turns(record.get("chosen"), "chosen", "assistant")
        rejected = _turns(record.get("rejected"), "rejected", "assistant")
    else:
        whole_chosen = _turns(record.get("chosen"), "chosen", "assistant")
        whole_rejected = _turns(record.get("rejected"), "rejected", "assistant")
        prompt, chosen, rejected = _split_shared_prefix(whole_chosen, whole_rejected)
    _check_answer(chosen, "chosen")
    _check_answer(rejected, "rejected")
    if prompt[-1]["role"] != "user":
        raise ValueError(f"prompt must end with a user turn (it ends with a {prompt[-1]['role']} turn)")
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise ValueError("chosen and rejected are identical; a pair needs two different answers")
    extra: dict[str, Any] = {}
    if system_prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system_prompt}, *prompt]
        extra["system_prompt"] = True
    return {"messages": prompt + chosen, "prompt_turns": len(prompt), "rejected": rejected, **extra}


def is_pair(record: dict[str, Any]) -> bool:
    """Whether a loaded record is a preference pair."""
    return "rejected" in record


def check_stage_records(stage: str, records: list[dict[str, Any]]) -> None:
    """Every record suits the stage: pairs for dpo, conversations or text for sft (DataError at the first)."""
    for record in records:
        where = record.get("location", "record")
        if stage == "dpo" and not is_pair(record):
            raise DataError(
                f"{where}: train.stage is dpo but this record is not a preference pair; give prompt, chosen "
                "and rejected fields (docs/preference.md) or set train.stage: sft."
            )
        if stage == "sft" and is_pair(record):
            raise DataError(
                f"{where}: a preference pair (chosen/rejected) in an SFT recipe; set train.stage: dpo to train "
                "on pairs, or give SFT data."
            )


def pair_parts(record: dict[str, Any]) -> tuple[Messages, Messages, Messages]:
    """(prompt, chosen, rejected) message lists of a loaded pair."""
    turns = record["prompt_turns"]
    return record["messages"][:turns], record["messages"][turns:], record["rejected"]


def prompt_length(tokenizer: PreTrainedTokenizerBase, prompt: Messages) -> int:
    """Tokens of the prompt as the chat template renders it before an answer (generation prompt included)."""
    text = render(tokenizer, prompt, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def pair_dataset(
    tokenized: Dataset,
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    max_prompt_length: int | None,
) -> Dataset:
    """The tokenized SFT view of the pairs (shown by audits) with trl's conversational prompt/chosen/rejected
    columns added, and `prompt_tokens`. Pairs whose prompt is longer than max_prompt_length, or fills
    max_length, are dropped with a warning: nothing of their answers would be compared."""
    by_location = {r["location"]: r for r in records}
    limit = min(max_prompt_length or max_length, max_length - 1)
    columns: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": [], "prompt_tokens": []}
    keep: list[int] = []
    for index, location in enumerate(tokenized["location"]):
        prompt, chosen, rejected = pair_parts(by_location[location])
        try:
            tokens = prompt_length(tokenizer, prompt)
        except TemplateMismatch as exc:
            raise DataError(f"{location}: {exc}; fix the record or the chat template.") from None
        if tokens > limit:
            continue
        keep.append(index)
        for key, value in zip(columns, (prompt, chosen, rejected, tokens), strict=True):
            columns[key].append(value)
    dropped = len(tokenized) - len(keep)
    if dropped:
        log.warning(
            "%d pair(s) had a prompt longer than %d tokens and were dropped (dpo.max_prompt_length, "
            "train.max_length).",
            dropped,
            limit,
        )
    if not keep:
        raise DataError(
            f"no preference pair has a prompt of at most {limit} tokens; raise train.max_length or "
            "dpo.max_prompt_length."
        )
    dataset = tokenized.select(keep)
    for key, values in columns.items():
        dataset = dataset.add_column(key, values)
    return dataset
