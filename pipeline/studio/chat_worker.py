"""The studio's chat child process: loads one model (a run, adapter or base) and streams answers as JSON lines.

`python -m pipeline.studio.chat_worker TARGET` prints {"ready": ...} once loaded (or {"error": ...} and exits
1), then for each request line {"messages": [...], "sampling": {...}} prints {"piece": text} lines and a last
{"done": true, "tokens": n, "seconds": s} (or {"error": ...}). Generation is pipeline.inference's TokenStream,
the same code as `pipeline chat`; the model never loads in the studio's server process.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from pipeline.errors import PipelineError


def _say(out: IO[str], **message: Any) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def answer(model: Any, tokenizer: Any, request: dict[str, Any], out: IO[str]) -> None:
    """Stream one answer to request's messages with its sampling settings, one JSON line per piece."""
    from pipeline.data.formatting import render
    from pipeline.inference.generation import Sampling
    from pipeline.inference.stream import TokenStream

    sampling = Sampling(**request.get("sampling", {}))
    prompt = render(tokenizer, request["messages"], add_generation_prompt=True)
    stream = TokenStream(model, tokenizer, prompt, sampling)
    for piece in stream:
        if piece:
            _say(out, piece=piece)
    _say(out, done=True, tokens=stream.tokens, seconds=stream.seconds, finish=stream.finish_reason)


def main(argv: list[str] | None = None, stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Load the target named in argv, then answer requests from stdin until it closes."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    target = (argv if argv is not None else sys.argv[1:])[0]
    from pipeline.inference.loading import load_for_inference

    try:
        loaded = load_for_inference(target, merge=True)
    except PipelineError as exc:
        _say(stdout, error=str(exc).splitlines()[0])
        return 1
    _say(stdout, ready=True, target=target)
    for line in stdin:
        if not line.strip():
            continue
        try:
            answer(loaded.model, loaded.tokenizer, json.loads(line), stdout)
        except (PipelineError, ValueError, KeyError, TypeError) as exc:
            _say(stdout, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
