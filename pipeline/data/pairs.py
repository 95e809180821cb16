"""Preference data: validate pairs {prompt, chosen, rejected} (DPO) and unpaired {prompt, completion, label}
records (KTO), and shape them for their stage.

A pair becomes {'messages': prompt + chosen, 'prompt_turns': n, 'rejected': [...]}, an unpaired record
{'messages': prompt + completion, 'prompt_turns': n, 'label': bool}: the SFT view of the record is what
hygiene, audits and the SFT-style evaluation read, and the rest rides along. `prompt`, `chosen`, `rejected`
and `completion` may be strings or message lists; without a `prompt`, `chosen` and `rejected` are whole
conversations and their shared leading turns are the prompt.
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
PAIR_FORMATS = ("preference", "unpaired", "prompts")
LABELS = {"true": True, "false": False}  # CSV cells hold labels as text


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


def convert_unpaired(record: Any, system_prompt: str | None = None) -> dict[str, Any]:
    """One unpaired record {prompt, completion, label} in the form above; ValueError names the field."""
    if not isinstance(record, dict):
        raise ValueError(f"each record must be an object (got {type(record).__name__})")
    prompt = _turns(record.get("prompt"), "prompt", "user")
    completion = _turns(record.get("completion"), "completion", "assistant")
    _check_answer(completion, "completion")
    if prompt[-1]["role"] != "user":
        raise ValueError(f"prompt must end with a user turn (it ends with a {prompt[-1]['role']} turn)")
    label = record.get("label")
    label = LABELS.get(label.strip().lower(), label) if isinstance(label, str) else label
    if not isinstance(label, bool):
        raise ValueError(
            f"label must be true (a desirable completion) or false (got {record.get('label')!r})"
        )
    extra: dict[str, Any] = {}
    if system_prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system_prompt}, *prompt]
        extra["system_prompt"] = True
    return {"messages": prompt + completion, "prompt_turns": len(prompt), "label": label, **extra}


def convert_prompt(record: Any, system_prompt: str | None = None) -> dict[str, Any]:
    """A prompt-only record {prompt, answer?} (GRPO): the answer, if any, is the reference rewards compare with
    and the SFT view's assistant turn."""
    if not isinstance(record, dict):
        raise ValueError(f"each record must be an object (got {type(record).__name__})")
    prompt = _turns(record.get("prompt"), "prompt", "user")
    if prompt[-1]["role"] != "user":
        raise ValueError(f"prompt must end with a user turn (it ends with a {prompt[-1]['role']} turn)")
    answer = record.get("answer")
    if answer is not None and (not isinstance(answer, str) or not answer.strip()):
        raise ValueError(f"answer must be a non-empty string when given (got {answer!r})")
    if system_prompt and prompt[0]["role"] != "system":
        prompt = [{"role": "system", "content": system_prompt}, *prompt]
    reference = [{"role": "assistant", "content": answer}] if answer else []
    return {
        "messages": prompt + reference,
        "prompt_turns": len(prompt),
        "answer": answer,
        "prompt_only": True,
    }


def convert_preference(record: Any, fmt: str, system_prompt: str | None = None) -> dict[str, Any]:
    """A record of one of PAIR_FORMATS (preference, unpaired, prompts) in its loaded form."""
    if fmt == "prompts":
        return convert_prompt(record, system_prompt)
    if fmt == "unpaired":
        return convert_unpaired(record, system_prompt)
    return convert_pair(record, system_prompt)


def record_kind(record: dict[str, Any]) -> str:
    """The kind of a loaded record (a key of KINDS): prompts, pairs, labelled (completions) or conversations."""
    if "prompt_only" in record:
        return "prompts"
    return "pairs" if "rejected" in record else "labelled" if "label" in record else "conversations"


KINDS = {
    "prompts": "prompts (prompt and an optional answer)",
    "pairs": "preference pairs (prompt, chosen, rejected)",
    "labelled": "labelled completions (prompt, completion, label)",
    "conversations": "conversations, prompt/completion or text",
}


def check_stage_records(
    stage: str, kind: str, records: list[dict[str, Any]], stages_by_kind: dict[str, list[str]]
) -> None:
    """Every record is of the kind the stage trains on (KINDS); DataError at the first that is not, naming
    both and the stages (stages_by_kind: kind -> stage names) that would train on it."""
    for record in records:
        found = record_kind(record)
        if found != kind:
            fitting = " or ".join(stages_by_kind.get(found, [])) or "another stage"
            raise DataError(
                f"{record.get('location', 'record')}: train.stage is {stage}, which trains on {KINDS[kind]}, "
                f"but this record holds {KINDS[found]}; set train.stage: {fitting} or give {stage} data "
                "(docs/preference.md)."
            )


def pair_parts(record: dict[str, Any]) -> tuple[Messages, Messages, Messages]:
    """(prompt, chosen, rejected) message lists of a loaded pair."""
    turns = record["prompt_turns"]
    return record["messages"][:turns], record["messages"][turns:], record["rejected"]


def prompt_length(tokenizer: PreTrainedTokenizerBase, prompt: Messages) -> int:
    """Tokens of the prompt as the chat template renders it before an answer (generation prompt included)."""
    text = render(tokenizer, prompt, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def conversation_prompt(record: dict[str, Any]) -> Messages:
    """The turns of a conversation before its last assistant turn (what a student answers when it learns
    from a teacher); ValueError when the record has no such turns (plain text, or no answer)."""
    messages = record.get("messages")
    if not messages:
        raise ValueError(
            "a text record has no prompt to answer; give conversations or prompt/completion records"
        )
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
    prompt = messages[:last]
    if not prompt or prompt[-1]["role"] not in ("user", "tool"):
        raise ValueError("the conversation has no user turn before its last answer")
    return prompt


def _trl_columns(record: dict[str, Any]) -> dict[str, Any]:
    """trl's conversational columns of a loaded record: prompt/chosen/rejected or prompt/completion/label."""
    if record_kind(record) == "conversations":  # distillation: the turns before its last answer
        return {"prompt": conversation_prompt(record)}
    turns = record["prompt_turns"]
    prompt, answer = record["messages"][:turns], record["messages"][turns:]
    if "prompt_only" in record:
        return {"prompt": prompt, "answer": record.get("answer") or ""}
    if "rejected" in record:
        return {"prompt": prompt, "chosen": answer, "rejected": record["rejected"]}
    return {"prompt": prompt, "completion": answer, "label": record["label"]}


def pair_dataset(
    tokenized: Dataset,
    records: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    max_prompt_length: int | None,
) -> Dataset:
    """The tokenized SFT view of the records (shown by audits) with trl's conversational columns added
    (prompt/chosen/rejected for pairs, prompt/completion/label for unpaired records) and `prompt_tokens`.
    Records whose prompt is longer than max_prompt_length, or fills max_length, are dropped with a warning:
    nothing of their answers would be scored."""
    by_location = {r["location"]: r for r in records}
    limit = min(max_prompt_length or max_length, max_length - 1)
    columns: dict[str, list[Any]] = {}
    keep: list[int] = []
    for index, location in enumerate(tokenized["location"]):
        try:
            trl_columns = _trl_columns(by_location[location])
        except ValueError as exc:
            raise DataError(f"{location}: {exc} (train.stage reads prompts).") from None
        prompt = trl_columns["prompt"]
        try:
            tokens = prompt_length(tokenizer, prompt)
        except TemplateMismatch as exc:
            raise DataError(f"{location}: {exc}; fix the record or the chat template.") from None
        if tokens > limit:
            continue
        keep.append(index)
        for key, value in {**trl_columns, "prompt_tokens": tokens}.items():
            columns.setdefault(key, []).append(value)
    dropped = len(tokenized) - len(keep)
    if dropped:
        log.warning(
            "%d record(s) had a prompt longer than %d tokens and were dropped (max_prompt_length of the stage, "
            "train.max_length).",
            dropped,
            limit,
        )
    if not keep:
        raise DataError(
            f"no record has a prompt of at most {limit} tokens; raise train.max_length or the stage's "
            "max_prompt_length."
        )
    dataset = tokenized.select(keep)
    for key, values in columns.items():
        dataset = dataset.add_column(key, values)
    return dataset
