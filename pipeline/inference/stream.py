"""Streaming generation: one prompt decoded in a background thread, its text handed out as it is produced."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from pipeline.inference.generation import Sampling, assisted_kwargs, eos_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest end of text that could still grow into a stop string (not safe to show yet)."""
    return max((k for s in stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


@functools.cache
def _streamer_class() -> type:
    """transformers' TextIteratorStreamer that also counts the generated tokens and keeps the last one."""
    from transformers import TextIteratorStreamer

    class CountingStreamer(TextIteratorStreamer):
        tokens = 0
        last_token: int | None = None

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                ids = value.reshape(-1).tolist()
                self.tokens += len(ids)
                self.last_token = ids[-1] if ids else self.last_token
            super().put(value)

    return CountingStreamer


def _cancel_criteria(event: threading.Event) -> Any:
    """A stopping criterion that ends generation once event is set (client gone, user interrupt)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
            return torch.full(
                (input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([Cancelled()])


class TokenStream:
    """Iterate the text of one generation as it is produced; stop strings are cut out, as in `generate`.

    The generation runs in its own thread (inside `lock` when given, so one model serves one request at a
    time), or with `start=False` in someone else's batch (`pipeline serve`'s batcher feeds `streamer` and calls
    `complete`). `cancel()` (or leaving a `with` block early) stops it at the next token. After the iteration,
    `finish_reason` is "stop", "length" or "cancelled" and `tokens` counts the generated tokens.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prompt: str,
        sampling: Sampling | None = None,
        assistant_model: PreTrainedModel | None = None,
        assistant_tokenizer: PreTrainedTokenizerBase | None = None,
        lock: AbstractContextManager[Any] | None = None,
        add_special_tokens: bool = False,
        setup: Callable[[], AbstractContextManager[Any]] | None = None,
        start: bool = True,
    ) -> None:
        self.sampling = sampling or Sampling()
        if self.sampling.n != 1:
            raise ValueError("a stream generates one sample; use n=1")
        self.prompt, self.prompt_tokens, self._add_special = prompt, 0, add_special_tokens
        self.finish_reason = "length"
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._eos = eos_token_ids(model, tokenizer)
        self._cancel = threading.Event()
        self._model, self._tokenizer, self._lock, self._setup = model, tokenizer, lock or nullcontext(), setup
        self._extra = assisted_kwargs(model, tokenizer, self.sampling, assistant_model, assistant_tokenizer)
        self.streamer = _streamer_class()(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._run, name="generation", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        import torch

        try:
            with self._lock:
                if self._cancel.is_set():
                    return
                start = time.perf_counter()
                # Tokenizing here, inside the lock, keeps the (not thread-safe) fast tokenizer on one thread.
                inputs = self._tokenizer(
                    self.prompt, return_tensors="pt", add_special_tokens=self._add_special
                )
                self.prompt_tokens = int(inputs["input_ids"].shape[1])
                scope = self._setup() if self._setup is not None else nullcontext()
                with scope, torch.inference_mode():
                    if self.sampling.seed is not None:
                        torch.manual_seed(self.sampling.seed)
                    self._model.generate(
                        **inputs.to(self._model.device),
                        **self.sampling.generate_kwargs(),
                        **self._extra,
                        streamer=self.streamer,
                        stopping_criteria=_cancel_criteria(self._cancel),
                        pad_token_id=self._tokenizer.pad_token_id,
                        tokenizer=self._tokenizer,
                    )
                self.seconds = time.perf_counter() - start
        except BaseException as exc:  # handed to the reading thread, which re-raises it
            self.error = exc
        finally:
            self.complete(self.error)

    def complete(self, error: BaseException | None = None) -> None:
        """The generation is over (error: why it failed): the reader sees the end of the text."""
        if self._finished.is_set():
            return
        self.error = error
        self.streamer.end()
        self._finished.set()

    def cancel(self) -> None:
        """Stop the generation at its next token (or before it starts when still queued)."""
        self._cancel.set()

    @property
    def cancelled(self) -> threading.Event:
        """Set once the generation should stop (client gone, stop string seen, user interrupt)."""
        return self._cancel

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __iter__(self) -> Iterator[str]:
        text, sent, stop = "", 0, self.sampling.stop
        for piece in self.streamer:
            text += piece
            # Text that could begin a stop string is held back, so stop strings start at or after `sent`.
            hits = [i for i in (text.find(s, sent) for s in stop) if i >= 0]
            if hits:
                if min(hits) > sent:
                    yield text[sent : min(hits)]
                self.finish_reason = "stop"
                self.cancel()
                break
            safe = len(text) - _held_back(text, stop)
            if safe > sent:
                yield text[sent:safe]
                sent = safe
        else:
            if len(text) > sent:
                yield text[sent:]
            self._finished.wait()
            if self.error is not None:
                raise self.error
            if self._cancel.is_set():
                self.finish_reason = "cancelled"
            elif self.streamer.last_token in self._eos or self.tokens < self.sampling.max_new_tokens:
                # EOS, or a stop string that the text search missed (split by skipped special tokens)
                self.finish_reason = "stop"
        self._finished.wait()
        self.join()

    def join(self) -> None:
        """Wait until the generation thread has ended, not only its text: a process that exits while that
        thread still unwinds torch's native code aborts ("terminate called without an active exception")."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def running(self) -> bool:
        """True while the generation waits for the lock or decodes."""
        return not self._finished.is_set()

    @property
    def tokens(self) -> int:
        """Tokens generated so far (EOS included)."""
        return self.streamer.tokens

    def text(self) -> str:
        """Consume the stream and return the whole text."""
        return "".join(self)


class BatchStreamer:
    """Hands each row of a batched generation to its own TokenStream (None: a row nobody streams).

    A row ends at EOS, at its token limit, at padding (a stop string ended it) or once its stream is cancelled;
    its reader then sees the end at once, while the other rows go on.
    """

    def __init__(self, rows: list[tuple[TokenStream | None, int]], eos: set[int], pad: int | None) -> None:
        self.rows, self.eos, self.pad = rows, eos, pad
        self.sent = [0] * len(rows)
        self.open = [stream is not None for stream, _ in rows]
        self.prompt = True  # `generate` hands over the prompt ids first

    def put(self, value: Any) -> None:
        """Called by `generate` with the prompt ids, then with each step's new token of every row."""
        if self.prompt:
            self.prompt = False
            for index, (stream, _) in enumerate(self.rows):
                if stream is not None:
                    stream.streamer.put(value[index : index + 1])
            return
        for index, token in enumerate(value.reshape(-1).tolist()):
            stream, limit = self.rows[index]
            if not self.open[index] or stream is None:
                continue
            if stream.cancelled.is_set() or (token == self.pad and token not in self.eos):
                self._close(index)
                continue
            stream.streamer.put(value.new_tensor([token]))
            self.sent[index] += 1
            if token in self.eos or self.sent[index] >= limit:
                self._close(index)

    def _close(self, index: int) -> None:
        self.open[index] = False
        stream = self.rows[index][0]
        if stream is not None:
            stream.complete()

    def end(self) -> None:
        """Called by `generate` when it is done: every row still open ends."""
        for index, is_open in enumerate(self.open):
            if is_open:
                self._close(index)
