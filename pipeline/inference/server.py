"""OpenAI-compatible HTTP API over a base model and its adapters (FastAPI + uvicorn, 127.0.0.1 by default)."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.inference.batching import Job
from pipeline.inference.engine import Engine
from pipeline.inference.generation import Generations, Sampling
from pipeline.inference.schema import (
    ApiError,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingRequest,
    chat_choice,
    chat_delta,
    envelope,
    new_id,
    text_choice,
    usage,
)
from pipeline.inference.stream import TokenStream

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1_000_000
HTTP_KINDS = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}


def _validation_error(exc: RequestValidationError) -> ApiError:
    """Malformed JSON is a 400; a well-formed body with bad fields or values is a 422 naming the field."""
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return ApiError(400, "The request body is not valid JSON.", code="invalid_json")
    first = errors[0] if errors else {}
    fields = [".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body" for e in errors]
    message = "; ".join(f"{f}: {e.get('msg', 'invalid')}" for f, e in zip(fields, errors, strict=True))
    return ApiError(
        422, message or "Invalid request.", param=fields[0] if first else None, code="invalid_value"
    )


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await api_error(request, _validation_error(exc))

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = HTTP_KINDS.get(exc.status_code, "invalid_request_error")
        return await api_error(request, ApiError(exc.status_code, str(exc.detail), kind=kind))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request to %s failed", request.url.path)  # the traceback goes to the server log only
        return await api_error(
            request, ApiError(500, f"Internal error ({type(exc).__name__}).", kind="server_error")
        )

    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, unexpected)


class _BodyLimit:
    """413 as OpenAI-style JSON for bodies over max_bytes, by Content-Length or while reading the body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"The request body is larger than {self.max_bytes} bytes; send less text."
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(ApiError(413, message).body(), status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            event = await receive()
            seen += len(event.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, message)  # FastAPI passes it on to our HTTPException handler
            return event

        await self.app(scope, limited, send)


def _bearer(api_key: str | None) -> Callable[[Request], None]:
    def check(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(
                401,
                "Incorrect or missing API key; send 'Authorization: Bearer <key>'.",
                kind="authentication_error",
                code="invalid_api_key",
            )

    return check


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


async def _stream_events(
    start: Callable[[], TokenStream],
    chunk: Callable[[str | None, str | None], dict[str, Any]],
    with_usage: bool,
    first: dict[str, Any] | None = None,
) -> AsyncIterator[str]:
    """Server-sent events of a stream started here; a client that goes away cancels it, freeing the model."""
    stream = start()
    pieces = iter(stream)
    started = first is None  # chat answers drop leading whitespace, as the non-streamed ones do
    try:
        if first is not None:
            yield _sse(first)
        while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
            piece = piece if started else piece.lstrip()
            if piece:
                started = True
                yield _sse(chunk(piece, None))
        yield _sse(chunk(None, stream.finish_reason))
        if with_usage:
            last = chunk(None, None) | {"choices": [], "usage": usage(stream.prompt_tokens, stream.tokens)}
            yield _sse(last)
        yield _sse("[DONE]")
    except Exception as exc:  # headers are sent: report in-band, as OpenAI does, without a traceback
        log.exception("stream failed")
        yield _sse(ApiError(500, f"Generation failed ({type(exc).__name__}).", kind="server_error").body())
    finally:
        stream.cancel()


async def _answer(job: Job, http: Request, poll: float = 0.25) -> Generations:
    """The job's result; a client that disconnects first cancels it (dropped if queued, stopped if decoding)."""
    future = asyncio.wrap_future(job.future)
    while True:
        done, _ = await asyncio.wait({future}, timeout=poll)  # seconds between disconnect checks
        if done:
            return future.result()
        if await http.is_disconnected():
            job.cancel()
            raise ApiError(499, "The client closed the request.", code="client_closed_request")


def _include_usage(request: SamplingRequest) -> bool:
    return bool(request.stream_options and request.stream_options.include_usage)


def _sampling(engine: Engine, request: SamplingRequest, prompt_tokens: int) -> Sampling:
    engine.check_model(request.model)
    if request.stream and request.n > 1:
        raise ApiError(422, "n must be 1 when stream is true.", param="n", code="invalid_value")
    return engine.sampling(request, prompt_tokens)


def create_app(engine: Engine, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI application: /v1/models, /v1/chat/completions and /v1/completions over engine."""
    app = FastAPI(title="pipeline serve", dependencies=[Depends(_bearer(api_key))])
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    app.state.engine = engine
    _install_error_handlers(app)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """The served model ids: the target, its base and each adapter."""
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "pipeline"} for name in engine.names
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatCompletionRequest, http: Request) -> Any:
        """Chat completion rendered with the served chat template; server-sent events when streamed."""
        engine.check_model(request.model)
        prompt = engine.chat_prompt([m.as_dict() for m in request.messages])
        sampling = _sampling(engine, request, engine.count_tokens(prompt))
        response_id = new_id("chatcmpl")
        engine.admit()
        if request.stream:

            def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
                delta = {"content": text} if text is not None else {}
                return envelope(
                    "chat.completion.chunk", response_id, request.model, [chat_delta(delta, finish)]
                )

            def start() -> TokenStream:
                return engine.stream(request.model, prompt, sampling, raw=False)

            first = envelope(
                "chat.completion.chunk",
                response_id,
                request.model,
                [chat_delta({"role": "assistant", "content": ""})],
            )
            events = _stream_events(start, chunk, _include_usage(request), first)
            return StreamingResponse(events, media_type="text/event-stream")
        result = await _answer(engine.submit(request.model, [prompt], sampling, False), http)
        choices = [
            chat_choice(i, c.text.strip(), c.finish_reason) for i, c in enumerate(result.completions[0])
        ]
        return envelope(
            "chat.completion",
            response_id,
            request.model,
            choices,
            usage=usage(result.prompt_tokens[0], result.new_tokens),
        )

    @app.post("/v1/completions", response_model=None)
    async def completions(request: CompletionRequest, http: Request) -> Any:
        """Text completion of raw prompts (no chat template); streamed for a single prompt on request."""
        engine.check_model(request.model)
        prompts = request.prompts()
        longest = max(engine.count_tokens(p, add_special_tokens=True) for p in prompts)
        sampling = _sampling(engine, request, longest)
        if request.stream and len(prompts) > 1:
            raise ApiError(422, "stream takes a single prompt.", param="prompt", code="invalid_value")
        response_id = new_id("cmpl")
        engine.admit()
        if request.stream:

            def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
                return envelope(
                    "text_completion", response_id, request.model, [text_choice(0, text or "", finish)]
                )

            def start() -> TokenStream:
                return engine.stream(request.model, prompts[0], sampling, raw=True)

            events = _stream_events(start, chunk, _include_usage(request))
            return StreamingResponse(events, media_type="text/event-stream")
        result = await _answer(engine.submit(request.model, prompts, sampling, True), http)
        choices = [
            text_choice(i * sampling.n + j, c.text, c.finish_reason)
            for i, samples in enumerate(result.completions)
            for j, c in enumerate(samples)
        ]
        return envelope(
            "text_completion",
            response_id,
            request.model,
            choices,
            usage=usage(sum(result.prompt_tokens), result.new_tokens),
        )

    return app


def run_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None) -> None:
    """Serve engine with uvicorn until interrupted."""
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        log.warning(
            "Serving on %s without an API key: anyone who can reach this port can use the model.", host
        )
    log.info("Serving %s at http://%s:%d/v1", ", ".join(engine.names), host, port)
    uvicorn.run(create_app(engine, api_key), host=host, port=port, log_level="info")


def serve_target(
    target: str,
    adapters: list[str],
    name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    max_tokens: int = 256,
    context_length: int | None = None,
    assistant: str | None = None,
    dtype: str | None = None,
    device: str = "auto",
    max_batch: int = 8,
) -> None:
    """Load target (+ NAME=PATH adapters on its base) and serve it until interrupted."""
    from pipeline.errors import PipelineError
    from pipeline.inference.engine import build_engine, display_name
    from pipeline.inference.loading import load_for_inference

    extra = {}
    for item in adapters:
        adapter_name, sep, where = item.partition("=")
        if not sep or not adapter_name or not where:
            raise PipelineError(f"--adapter {item!r}: expected NAME=PATH (an adapter folder or Hub id).")
        extra[adapter_name] = where
    loaded = load_for_inference(target, dtype, device)
    helper = load_for_inference(assistant, dtype, device).model if assistant else None
    engine = build_engine(
        loaded, name or display_name(target), extra, context_length, max_tokens, helper, max_batch
    )
    run_server(engine, host, port, api_key)
