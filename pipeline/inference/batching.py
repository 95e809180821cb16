"""Dynamic batching for `pipeline serve`: requests waiting for the model are decoded in one generation."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.inference.generation import (
    Completion,
    Generations,
    Sampling,
    assisted_kwargs,
    eos_token_ids,
    generate_batch,
    generate_text,
)
from pipeline.inference.stream import BatchStreamer, TokenStream

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Job:
    """One request: its prompts, settings, the future its answer goes to, a cancel flag and, when streamed,
    the TokenStream its text goes to."""

    name: str
    prompts: list[str]
    sampling: Sampling
    raw: bool
    future: Future[Generations] = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)
    stream: TokenStream | None = None

    def cancel(self) -> None:
        """Drop the job if it still waits; stop its rows at the next token if it is being decoded."""
        self.cancelled.set()
        self.future.cancel()  # succeeds only while the job waits

    def key(self) -> tuple[Any, ...] | None:
        """Jobs with equal keys can share a generation; None: this one runs alone.

        A seeded sample must not share the random stream with others (same seed, same answer), so it runs
        alone; the token limit may differ, since every row is cut at its own limit.
        """
        if self.sampling.seed is not None and not self.sampling.greedy:
            return None
        return (self.name, self.raw, replace(self.sampling, max_new_tokens=1, seed=None))

    @property
    def rows(self) -> int:
        """Sequences this job adds to a batch."""
        return len(self.prompts) * self.sampling.n


class Batcher:
    """A worker thread that owns the model: it takes the oldest waiting job and every waiting job that can
    share its generation (same model id, same settings but the token limit), up to max_rows sequences.

    `lock` is held while decoding (streams take it too); `use(name)` switches to the job's adapter.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        lock: AbstractContextManager[Any],
        use: Callable[[str], AbstractContextManager[Any]],
        max_rows: int = 8,
        assistant_model: PreTrainedModel | None = None,
    ) -> None:
        self.model, self.tokenizer, self.lock, self.use = model, tokenizer, lock, use
        self.max_rows, self.assistant_model = max_rows, assistant_model
        self._waiting: deque[Job] = deque()
        self._ready = threading.Condition()
        self.batch_sizes: deque[int] = deque(maxlen=256)  # jobs per generation, latest last (for tests)
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Job:
        """Queue a job; its future gets the Generations (or the exception)."""
        with self._ready:
            self._waiting.append(job)
            self._ready.notify()
        return job

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet started."""
        return len(self._waiting)

    def _alone(self, job: Job) -> bool:
        """True for a job decoded on its own: seeded sampling, too many rows, or assisted decoding (which
        transformers runs one sequence at a time)."""
        assisted = self.assistant_model is not None and job.sampling.n == 1
        return job.key() is None or job.rows > self.max_rows or assisted

    def _next_batch(self) -> list[Job]:
        with self._ready:  # only this thread takes jobs out, so the queue stays non-empty once it is
            first = self._waiting.popleft()
            key = first.key()
            if self._alone(first):
                return [first]
            batch, rows = [first], first.rows
            for job in list(self._waiting):
                if job.key() == key and rows + job.rows <= self.max_rows:
                    self._waiting.remove(job)
                    batch.append(job)
                    rows += job.rows
            return batch

    def _loop(self) -> None:
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
            # The batch is chosen once the model is free: every request that waited meanwhile can join.
            with self.lock:
                batch = self._started(self._next_batch())
                if not batch:
                    continue
                self.batch_sizes.append(len(batch))
                try:
                    results = self._run(batch)
                except BaseException as exc:  # each request of the batch answers with it (a 500)
                    for job in batch:
                        if job.stream is not None:
                            job.stream.complete(exc)
                        job.future.set_exception(exc)
                else:
                    for job, result in zip(batch, results, strict=True):
                        job.future.set_result(result)

    @staticmethod
    def _started(jobs: list[Job]) -> list[Job]:
        """The jobs still wanted; one cancelled while it waited is dropped (its future and stream say so)."""
        started = []
        for job in jobs:
            if job.cancelled.is_set():
                job.future.cancel()
            if job.future.set_running_or_notify_cancel():
                started.append(job)
            elif job.stream is not None:
                job.stream.complete()
        return started

    def _run(self, batch: list[Job]) -> list[Generations]:
        first = batch[0]
        with self.use(first.name):
            if self._alone(first) and first.stream is None:
                assistant = self.assistant_model if first.sampling.n == 1 else None
                result = generate_text(
                    self.model,
                    self.tokenizer,
                    first.prompts,
                    first.sampling,
                    batch_size=self.max_rows,
                    assistant_model=assistant,
                    add_special_tokens=first.raw,
                    cancelled=first.cancelled,
                )
                return [result]
            return self._decode_together(batch)

    def _decode_together(self, batch: list[Job]) -> list[Generations]:
        import torch

        first = batch[0]
        prompts = [p for job in batch for p in job.prompts]
        limits = [job.sampling.max_new_tokens for job in batch for _ in job.prompts]
        events = [job.cancelled for job in batch for _ in job.prompts]
        extra, streamer = {}, None
        if len(batch) == 1:  # a stream decoded alone: assisted or seeded, as TokenStream would
            if self.assistant_model is not None and first.sampling.n == 1:
                extra = assisted_kwargs(
                    self.model, self.tokenizer, first.sampling, self.assistant_model, None
                )
            if first.sampling.seed is not None:
                torch.manual_seed(first.sampling.seed)
        if any(job.stream is not None for job in batch):
            rows = [(job.stream, job.sampling.max_new_tokens) for job in batch for _ in job.prompts]
            streamer = BatchStreamer(
                rows, eos_token_ids(self.model, self.tokenizer), self.tokenizer.pad_token_id
            )
            for job in batch:
                if job.stream is not None:
                    ids = self.tokenizer(job.prompts[0], add_special_tokens=job.raw)["input_ids"]
                    job.stream.prompt_tokens = len(ids)
        side, self.tokenizer.padding_side = self.tokenizer.padding_side, "left"
        start = time.perf_counter()
        try:
            samples, lengths = generate_batch(
                self.model,
                self.tokenizer,
                prompts,
                first.sampling,
                limits=limits,
                cancelled=events,
                extra=extra,
                add_special_tokens=first.raw,
                streamer=streamer,
            )
        finally:
            self.tokenizer.padding_side = side
        seconds = time.perf_counter() - start
        for job in batch:
            if job.stream is not None:
                job.stream.seconds = seconds
                job.stream.complete()
        results, offset = [], 0
        for job in batch:
            mine: list[list[Completion]] = samples[offset : offset + len(job.prompts)]
            results.append(
                Generations(
                    texts=[s[0].text for s in mine],
                    new_tokens=sum(c.tokens for s in mine for c in s),
                    seconds=seconds,
                    completions=mine,
                    prompt_tokens=lengths[offset : offset + len(job.prompts)],
                )
            )
            offset += len(job.prompts)
        return results
