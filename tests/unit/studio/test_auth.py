"""The studio's key: refused off loopback without one; with one, every page and endpoint needs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pipeline.errors import PipelineError
from pipeline.studio.app import create_app
from pipeline.studio.auth import COOKIE, check_binding


def test_binding_off_loopback_needs_a_key() -> None:
    check_binding("127.0.0.1", None)
    check_binding("0.0.0.0", "k")
    with pytest.raises(PipelineError, match="PIPELINE_STUDIO_KEY"):
        check_binding("0.0.0.0", None)


def test_every_request_needs_the_key(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path, key="s3cret"))
    page = client.get("/runs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/static/studio.js", follow_redirects=False).status_code == 303
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    wrong = client.post("/login", data={"key": "nope", "next": "/runs"}, follow_redirects=False)
    assert "failed=1" in wrong.headers["location"] and COOKIE not in wrong.cookies
    right = client.post("/login", data={"key": "s3cret", "next": "/runs"}, follow_redirects=False)
    assert right.headers["location"] == "/runs" and "s3cret" not in right.cookies[COOKIE]
    assert client.get("/runs").status_code == 200


def test_login_never_redirects_off_site(tmp_path: Path) -> None:
    client = TestClient(create_app(tmp_path, key="k"))
    response = client.post("/login", data={"key": "k", "next": "//evil.example"}, follow_redirects=False)
    assert response.headers["location"] == "/runs"
