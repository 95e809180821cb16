"""The studio's access rule: open on loopback; anywhere else only with the key (PIPELINE_STUDIO_KEY).

A browser logs in once through a form and then carries a cookie holding the key's SHA-256 (never the key);
scripts send `Authorization: Bearer KEY`. Every request is checked, pages and API alike.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from pipeline.errors import PipelineError

KEY_ENV = "PIPELINE_STUDIO_KEY"
COOKIE = "studio_session"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
OPEN_PATHS = ("/login", "/static/studio.css")


def check_binding(host: str, key: str | None) -> None:
    """Refuse to serve off loopback without a key, in one line naming the fix."""
    if host not in LOOPBACK and not key:
        raise PipelineError(
            f"studio: --host {host} is reachable from other machines; set {KEY_ENV} to a secret key "
            "(every request must then carry it), or keep the default --host 127.0.0.1."
        )


def session_value(key: str) -> str:
    """What the login cookie holds: the key's SHA-256, so the key itself is never stored in a browser."""
    return hashlib.sha256(f"pipeline-studio:{key}".encode()).hexdigest()


def authorized(request: Request, key: str) -> bool:
    """True when the request carries the key (bearer header) or the login cookie."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), key.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return secrets.compare_digest(cookie.encode(), session_value(key).encode())


def key_middleware(
    key: str | None,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """An HTTP middleware enforcing the key on every path but the login form (none without a key)."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if key is None or request.url.path in OPEN_PATHS or authorized(request, key):
            return await call_next(request)
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"error": "studio: this studio needs its key (log in, or send a bearer key)."}, 401
            )
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)

    return middleware
