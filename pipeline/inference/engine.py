"""The model behind `pipeline serve`: one base with named adapters, waiting requests batched, context checks."""

from __future__ import annotations

import copy
import threading
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.formatting import Messages, TemplateMismatch, render
from pipeline.errors import AssetError
from pipeline.inference.batching import Batcher, Job
from pipeline.inference.generation import Generations, Sampling
from pipeline.inference.schema import ApiError, SamplingRequest
from pipeline.inference.stream import TokenStream

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from pipeline.models.artifacts import LoadedTarget

BASE = None  # the adapter name under which the bare base model is served


def display_name(target: str) -> str:
    """A model id for a target: a Hub id as given, a folder by its name."""
    path = Path(target).expanduser()
    return path.resolve().name if path.exists() else target


@dataclass
class Engine:
    """Serves `names` (model id -> peft adapter name, or BASE) from one model; waiting non-streamed requests
    are decoded together (up to max_batch sequences), streams one at a time between those batches."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    names: dict[str, str | None]
    context_length: int
    default_max_tokens: int = 256
    max_pending: int = 16
    assistant_model: PreTrainedModel | None = None
    max_batch: int = 8

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        # Request threads count tokens with their own copy: a fast tokenizer is not safe across threads.
        self._counter = copy.deepcopy(self.tokenizer)
        self._counter_lock = threading.Lock()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._live: set[TokenStream] = set()
        self.streams: deque[TokenStream] = deque(maxlen=8)  # the latest streams, for statistics and tests
        self.batcher = Batcher(
            self.model, self.tokenizer, self.lock, self.use, self.max_batch, self.assistant_model
        )

    def check_model(self, name: str) -> None:
        """404 unless name is one of the served model ids."""
        if name not in self.names:
            raise ApiError(
                404,
                f"The model '{name}' does not exist; served: {', '.join(self.names)}.",
                param="model",
                code="model_not_found",
            )

    def count_tokens(self, text: str, add_special_tokens: bool = False) -> int:
        """Number of tokens of text (thread-safe)."""
        with self._counter_lock:
            return len(self._counter(text, add_special_tokens=add_special_tokens)["input_ids"])

    def chat_prompt(self, messages: Messages) -> str:
        """The conversation rendered by the served chat template, ready for the assistant's turn."""
        try:
            with self._counter_lock:
                return render(self._counter, messages, add_generation_prompt=True)
        except TemplateMismatch as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from None

    def sampling(self, request: SamplingRequest, prompt_tokens: int) -> Sampling:
        """Decoding settings for a request; 400 when prompt + completion would not fit the context."""
        room = self.context_length - prompt_tokens
        wanted = request.wanted_tokens()
        if room < 1 or (wanted is not None and wanted > room):
            raise ApiError(
                400,
                f"This model's maximum context length is {self.context_length} tokens; the prompt has "
                f"{prompt_tokens} and {wanted or 1} more were requested; "
                "shorten the messages or lower max_tokens.",
                param="max_tokens" if room >= 1 else "messages",
                code="context_length_exceeded",
            )
        return Sampling(
            max_new_tokens=wanted or min(self.default_max_tokens, room),
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=request.top_k,
            min_p=request.min_p,
            repetition_penalty=request.repetition_penalty,
            seed=request.seed,
            stop=request.stops(),
            n=request.n,
        )

    def load(self) -> int:
        """Requests waiting for or holding the model: blocking calls plus streams still generating."""
        self._live = {s for s in self._live if s.running}
        return self._pending + len(self._live)

    def admit(self) -> None:
        """429 when max_pending requests are already queued or running (checked before a request starts)."""
        if self.load() >= self.max_pending:
            raise ApiError(
                429,
                f"The server is busy ({self.max_pending} requests queued); retry shortly.",
                kind="server_busy",
                code="server_busy",
            )

    def use(self, name: str) -> Any:
        """Switch the model to the adapter behind name; the base runs with adapters disabled."""
        from peft import PeftModel

        adapter = self.names[name]
        if not isinstance(self.model, PeftModel):
            return nullcontext()
        if adapter is BASE:
            return self.model.disable_adapter()
        self.model.set_adapter(adapter)
        return nullcontext()

    def submit(self, name: str, prompts: list[str], sampling: Sampling, raw: bool) -> Job:
        """Queue a generation for every prompt; the job's future gets the Generations."""
        with self._pending_lock:
            self._pending += 1
        job = self.batcher.submit(Job(name, prompts, sampling, raw))
        job.future.add_done_callback(lambda _: self._done())
        return job

    def _done(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def complete(self, name: str, prompts: list[str], sampling: Sampling, raw: bool) -> Generations:
        """Generate for every prompt, batched with other waiting requests (blocking)."""
        return self.submit(name, prompts, sampling, raw).future.result()

    def stream(self, name: str, prompt: str, sampling: Sampling, raw: bool) -> TokenStream:
        """Start a streamed generation; it is decoded with the other waiting requests, like `submit`'s."""
        stream = TokenStream(
            self.model,
            self.tokenizer,
            prompt,
            sampling,
            assistant_model=self.assistant_model,
            add_special_tokens=raw,
            start=False,
        )
        self.streams.append(stream)
        self._live.add(stream)
        self.batcher.submit(Job(name, [prompt], sampling, raw, cancelled=stream.cancelled, stream=stream))
        return stream


def build_engine(
    loaded: LoadedTarget,
    name: str,
    adapters: dict[str, str],
    context_length: int | None = None,
    default_max_tokens: int = 256,
    assistant_model: PreTrainedModel | None = None,
    max_batch: int = 8,
) -> Engine:
    """An engine for a loaded target plus extra adapters (name -> folder or Hub id) on the same base."""
    from peft import PeftModel

    from pipeline.models.artifacts import resolve_target

    model = loaded.model
    names: dict[str, str | None] = {name: "default" if loaded.ref.adapter_dir else BASE}
    base_name = loaded.ref.base.name
    if loaded.ref.adapter_dir is not None or adapters:
        names.setdefault(display_name(base_name), BASE)
    for adapter_name, where in adapters.items():
        ref = resolve_target(where)
        if ref.adapter_dir is None:
            raise AssetError(f"--adapter {adapter_name}={where}: not an adapter (no adapter_config.json).")
        if ref.base.name != base_name:
            raise AssetError(
                f"--adapter {adapter_name}={where}: trained on '{ref.base.name}', but the served base "
                f"is '{base_name}'; serve it from its own base."
            )
        if isinstance(model, PeftModel):
            model.load_adapter(str(ref.adapter_dir), adapter_name=adapter_name)
        else:
            model = PeftModel.from_pretrained(model, str(ref.adapter_dir), adapter_name=adapter_name)
        names[adapter_name] = adapter_name
    model.eval()
    limit = getattr(model.config, "max_position_embeddings", None) or 2048
    return Engine(
        model,
        loaded.tokenizer,
        names,
        min(context_length or limit, limit),
        default_max_tokens,
        assistant_model=assistant_model,
        max_batch=max_batch,
    )
