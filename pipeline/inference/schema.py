"""Request and response shapes of the OpenAI-compatible API (the subset `pipeline serve` implements)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP = 4
MAX_N = 8


class ApiError(Exception):
    """An error answered as OpenAI-style JSON: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    """A text part of a message's content (images and audio are not supported)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn; content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        """The message as the chat template expects it ("developer" is the newer name of "system")."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(BaseModel):
    """Streaming options: include_usage adds a last chunk with token counts."""

    include_usage: bool = False


class SamplingRequest(BaseModel):
    """Fields shared by chat and text completions; unknown OpenAI fields (user, metadata, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="Extension: keep the k most likely tokens (0 = off).")
    min_p: float = Field(
        0.0, ge=0, le=1, description="Extension: drop tokens below min_p x the top probability."
    )
    repetition_penalty: float = Field(1.0, gt=0, le=10, description="Extension: >1 discourages repeats.")
    presence_penalty: float = Field(0.0, description="Not supported: only 0 is accepted.")
    frequency_penalty: float = Field(0.0, description="Not supported: only 0 is accepted.")
    n: int = Field(1, ge=1, le=MAX_N)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOP} non-empty strings")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _check_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("is not supported (only 0); use repetition_penalty")
        return value

    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def wanted_tokens(self) -> int | None:
        """The requested completion length, if any."""
        return self.max_tokens


class ChatCompletionRequest(SamplingRequest):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def wanted_tokens(self) -> int | None:
        """max_completion_tokens (newer clients) or max_tokens."""
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(SamplingRequest):
    """POST /v1/completions: raw text continuation, no chat template."""

    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False

    @field_validator("echo")
    @classmethod
    def _check_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("echo is not supported")
        return value

    def prompts(self) -> list[str]:
        """The prompt(s) as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


def new_id(prefix: str) -> str:
    """A response id such as chatcmpl-1f0c...."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The usage block: token counts of prompt and completion."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(
    kind: str, response_id: str, model: str, choices: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A response or stream chunk object around its choices."""
    return {
        "id": response_id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **extra,
    }


def chat_choice(index: int, text: str, finish_reason: str) -> dict[str, Any]:
    """A non-streamed chat choice."""
    message = {"role": "assistant", "content": text}
    return {"index": index, "message": message, "finish_reason": finish_reason, "logprobs": None}


def chat_delta(delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    """A streamed chat choice carrying a delta (role first, then content pieces)."""
    return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}


def text_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    """A text completion choice (streamed or not)."""
    return {"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}
