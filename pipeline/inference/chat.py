"""Interactive terminal chat: streamed answers, history kept within the context window, /reset and /system."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

from pipeline.data.formatting import Messages, render
from pipeline.errors import PipelineError
from pipeline.inference.generation import Sampling
from pipeline.inference.stream import TokenStream

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HELP = (
    "commands: /reset clears the history; /system TEXT sets the system prompt (/system alone removes it); "
    "/exit quits (so does end of input)"
)


@dataclass
class ChatSession:
    """The conversation so far, trimmed from the oldest turn so prompt + answer fit in the context window."""

    tokenizer: PreTrainedTokenizerBase
    context_length: int
    max_new_tokens: int
    system: str | None = None
    history: Messages = field(default_factory=list)
    dropped: int = 0

    def messages(self) -> Messages:
        """System prompt (if any) followed by the history."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def reset(self) -> None:
        """Forget the history (the system prompt stays)."""
        self.history.clear()

    def prompt_tokens(self) -> int:
        """Tokens of the rendered conversation with the generation prompt."""
        text = render(self.tokenizer, self.messages(), add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, user: str) -> str:
        """Add the user turn and render the conversation, dropping the oldest turns until it fits."""
        self.history.append({"role": "user", "content": user})
        budget = self.context_length - self.max_new_tokens
        while self.prompt_tokens() > budget:
            if len(self.history) == 1:
                self.history.pop()
                raise PipelineError(
                    f"this message does not fit the context ({self.context_length} tokens, "
                    f"{self.max_new_tokens} kept for the answer); shorten it or lower --max-new-tokens."
                )
            # Drop whole exchanges (user + assistant) so the history still alternates roles.
            drop = 2 if len(self.history) > 2 and self.history[1]["role"] == "assistant" else 1
            del self.history[:drop]
            self.dropped += drop
        return render(self.tokenizer, self.messages(), add_generation_prompt=True)


def _command(line: str, session: ChatSession, notices: IO[str]) -> bool:
    """Apply a /command; False when the chat should end."""
    name, _, argument = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        notices.write("[history cleared]\n")
    elif name == "/system":
        session.system = argument.strip() or None
        notices.write(f"[system prompt {'set' if session.system else 'removed'}]\n")
    else:
        notices.write(f"[{HELP}]\n" if name == "/help" else f"[unknown command {name}; {HELP}]\n")
    return True


def run_chat(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sampling: Sampling,
    system: str | None = None,
    context_length: int | None = None,
    assistant_model: PreTrainedModel | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    notices: IO[str] | None = None,
    stats: bool = False,
) -> ChatSession:
    """Read user turns line by line and stream each answer as it is generated; returns the final session."""
    stdin, stdout, notices = stdin or sys.stdin, stdout or sys.stdout, notices or sys.stderr
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    session = ChatSession(tokenizer, min(context_length or limit, limit), sampling.max_new_tokens, system)
    interactive = stdin.isatty()
    if interactive:
        notices.write(f"[chat with {getattr(model, 'name_or_path', 'the model')}; {HELP}]\n")
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not _command(line, session, notices):
                break
            continue
        dropped = session.dropped
        try:
            prompt = session.prompt(line)
        except PipelineError as exc:
            notices.write(f"[{exc}]\n")
            continue
        if session.dropped > dropped:
            notices.write(
                f"[dropped {session.dropped - dropped} old turns to fit {session.context_length} tokens]\n"
            )
        stream = TokenStream(model, tokenizer, prompt, sampling, assistant_model=assistant_model)
        pieces: list[str] = []
        try:
            for piece in stream:
                piece = piece if pieces else piece.lstrip()  # the answer is stored stripped; show it so
                if piece:
                    pieces.append(piece)
                    stdout.write(piece)
                    stdout.flush()
        except KeyboardInterrupt:
            stream.cancel()
            notices.write("\n[interrupted]")
        stdout.write("\n")
        stdout.flush()
        session.history.append({"role": "assistant", "content": "".join(pieces).strip()})
        if stats and stream.seconds:
            notices.write(f"[{stream.tokens} tokens, {stream.tokens / stream.seconds:.1f} tokens/s]\n")
    return session
