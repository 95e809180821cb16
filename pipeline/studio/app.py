"""The studio's FastAPI app: pages, JSON endpoints, static files and the key rule; `serve` runs it.

Only light modules load here (config, runs, jinja2): torch and transformers load in the child processes a run,
a chat model or a task starts, and in the memory plan's first request, so the studio is up in about a second.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pipeline.errors import PipelineError
from pipeline.studio import auth
from pipeline.studio.chat import ChatPool
from pipeline.studio.jobs import JobQueue
from pipeline.studio.runs_index import RunsIndex

HERE = Path(__file__).resolve().parent


def create_app(runs_dir: Path, key: str | None = None, env: dict[str, str] | None = None) -> FastAPI:
    """The studio over the run folders in runs_dir (new runs are written there too); key: required on
    every request when given."""
    from pipeline.studio.routes import chat, data, recipes, runs, ship, train

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read every run folder once in the background, so the first ledger request finds the rows cached.
        threading.Thread(target=app.state.index.summaries, name="ledger-warmup", daemon=True).start()
        yield
        app.state.jobs.shutdown()  # running children get SIGINT: they checkpoint, resumable
        app.state.chat.close()

    app = FastAPI(title="pipeline studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.runs_dir = Path(runs_dir).resolve()
    app.state.index = RunsIndex(app.state.runs_dir)
    app.state.jobs = JobQueue(app.state.runs_dir, env)
    app.state.chat = ChatPool(env)
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.state.key_required = key is not None
    app.middleware("http")(auth.key_middleware(key))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for module in (recipes, data, train, runs, chat, ship):
        app.include_router(module.router)

    @app.exception_handler(PipelineError)
    async def one_line(request: Request, exc: PipelineError) -> JSONResponse:
        return JSONResponse({"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}, 400)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/runs", failed: bool = False) -> HTMLResponse:
        return app.state.templates.TemplateResponse(
            request, "login.html", {"next": next, "failed": failed, "page": "login"}
        )

    @app.post("/login", include_in_schema=False)
    def login(key_given: str = Form(..., alias="key"), next: str = Form("/runs")) -> RedirectResponse:
        target = next if next.startswith("/") and not next.startswith("//") else "/runs"
        if key is None or not auth.secrets.compare_digest(key_given.encode(), key.encode()):
            return RedirectResponse(f"/login?failed=1&next={auth.quote(target)}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE, auth.session_value(key), httponly=True, samesite="strict")
        return response

    return app


def serve(host: str, port: int, runs_dir: Path, key: str | None) -> None:
    """Run the studio with uvicorn; off loopback only with a key."""
    import uvicorn

    auth.check_binding(host, key)
    app = create_app(runs_dir, key)
    print(
        f"studio: http://{'[' + host + ']' if ':' in host else host}:{port}/ (runs in {app.state.runs_dir})"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
