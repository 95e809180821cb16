"""Behind `pipeline generate`: load a target, read prompts (argument, JSONL or stdin), answer them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pipeline.data.formatting import Messages, prompt_messages
from pipeline.data.records import to_messages
from pipeline.errors import DataError, PipelineError
from pipeline.files import write_text
from pipeline.inference.generation import Sampling, generate
from pipeline.inference.loading import load_for_inference


@dataclass
class Prompt:
    """A conversation to answer and the input record it came from (copied into the JSONL output)."""

    messages: Messages
    record: dict[str, Any]


def with_system(messages: Messages, system: str | None) -> Messages:
    """Messages with a system turn first when system is given and they have none."""
    if system and not (messages and messages[0]["role"] == "system"):
        return [{"role": "system", "content": system}, *messages]
    return messages


def _record_messages(record: Any) -> tuple[Messages, dict[str, Any]]:
    """A prompt record: a JSON string, {"prompt": text/messages}, {"messages"} or {"instruction", "input"}."""
    if isinstance(record, str):
        return [{"role": "user", "content": record}], {"prompt": record}
    if not isinstance(record, dict):
        raise ValueError(f"a prompt must be a string or an object (got {type(record).__name__})")
    if "messages" in record:
        messages, reference = prompt_messages(to_messages(record["messages"]))
        if not messages or messages[-1]["role"] != "user":
            raise ValueError("messages must end with a user turn (or a user turn and its reference answer)")
        return messages, {**record, **({"reference": reference} if reference else {})}
    if isinstance(record.get("prompt"), list):
        return to_messages(record["prompt"], "prompt"), record
    text = record.get("prompt") or "\n\n".join(
        str(record[k]) for k in ("instruction", "input") if record.get(k)
    )
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a 'prompt', 'messages' or 'instruction' field with text")
    return [{"role": "user", "content": text}], record


def read_prompt_file(path: str, system: str | None = None, stdin: IO[str] | None = None) -> list[Prompt]:
    """Prompts from a JSONL file ('-' reads stdin); a bad line raises DataError naming file:line."""
    stream = (stdin or sys.stdin) if path == "-" else None
    if stream is None and not Path(path).is_file():
        raise DataError(f"{path}: no such prompts file; pass a JSONL file with one prompt per line.")
    lines = stream.read().splitlines() if stream else Path(path).read_text(encoding="utf-8").splitlines()
    prompts = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            messages, record = _record_messages(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            raise DataError(f"{'<stdin>' if stream else path}:{number}: {exc}.") from None
        prompts.append(Prompt(with_system(messages, record.get("system") or system), record))
    if not prompts:
        raise DataError(f"{path}: no prompts found; write one JSON object per line.")
    return prompts


def gather_prompts(prompt: str | None, file: str | None, system: str | None, stdin: IO[str]) -> list[Prompt]:
    """The prompts of a generate call: the argument, else --file, else all of stdin as one prompt."""
    if prompt is not None and file is not None:
        raise PipelineError("give either a PROMPT argument or --file, not both.")
    if file is not None:
        return read_prompt_file(file, system, stdin)
    if prompt is None or prompt == "-":
        if stdin.isatty():
            raise PipelineError("no prompt: pass PROMPT, --file prompts.jsonl, or pipe text on stdin.")
        prompt = stdin.read().strip()
        if not prompt:
            raise PipelineError("stdin was empty; pass PROMPT or --file prompts.jsonl.")
    return [Prompt(with_system([{"role": "user", "content": prompt}], system), {"prompt": prompt})]


def run_generate(
    target: str,
    prompts: list[Prompt],
    sampling: Sampling,
    as_jsonl: bool,
    output: Path | None = None,
    batch_size: int = 8,
    assistant: str | None = None,
    dtype: str | None = None,
    device: str = "auto",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> None:
    """Answer the prompts with the target; text (or JSONL) goes to out or the output file, speed to err."""
    out, err = out or sys.stdout, err or sys.stderr
    loaded = load_for_inference(target, dtype, device, merge=True)
    helper = load_for_inference(assistant, dtype, device, merge=True) if assistant else None
    result = generate(
        loaded.model,
        loaded.tokenizer,
        [p.messages for p in prompts],
        sampling,
        batch_size=batch_size,
        assistant_model=helper.model if helper else None,
        assistant_tokenizer=helper.tokenizer if helper else None,
    )
    if as_jsonl:
        lines = []
        for prompt, samples in zip(prompts, result.completions, strict=True):
            row = {**prompt.record, "completion": samples[0].text, "finish_reason": samples[0].finish_reason}
            if sampling.n > 1:
                row["samples"] = [c.text for c in samples]
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        if output is not None:
            write_text(output, "".join(lines))
        else:
            out.write("".join(lines))
    else:
        samples = result.completions[0]
        for index, completion in enumerate(samples):
            if len(samples) > 1:
                out.write(f"--- sample {index + 1} ---\n")
            out.write(completion.text + "\n")
    assisted = f", assisted by {assistant}" if assistant else ""
    err.write(
        f"{result.new_tokens} tokens in {result.seconds:.2f} s "
        f"({result.tokens_per_second:.1f} tokens/s{assisted})\n"
    )
    if output is not None:
        err.write(f"{output}: {len(prompts)} answers\n")
