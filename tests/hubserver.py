"""A small in-memory Hugging Face Hub for tests: the endpoints the real huggingface_hub 2.4 client calls.

Covers create_repo, create_branch, preupload, commit (NDJSON), repo info, refs, tree, paths-info, resolve
(HEAD/GET) and whoami, enough for `HfApi.create_commit`, `upload_folder`, `snapshot_download` and
`PeftModel.from_pretrained` to run unchanged over real HTTP on 127.0.0.1. Preupload always answers
uploadMode "regular", so file contents travel base64-encoded inside the commit (no LFS/xet storage).
Every request path and body is kept in `received` so tests can scan what was sent besides the auth header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO = r"(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)"
API_ROUTES = [
    ("POST", r"/api/repos/create", "create_repo"),
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/{REPO}/branch/(?P<rev>[^/]+)", "create_branch"),
    ("GET", rf"/api/{REPO}/refs", "refs"),
    ("POST", rf"/api/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("GET", rf"/api/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("GET", rf"/api/{REPO}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
]
RESOLVE = re.compile(r"/(?:(?P<type>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")


@dataclass
class Repo:
    """One repository: branches point at commits, a commit is a full snapshot {path: bytes}."""

    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)

    def snapshot(self, rev: str) -> tuple[str, dict[str, bytes]] | None:
        """(commit id, files) for a branch name or commit id; None if unknown."""
        sha = self.branches.get(rev, rev)
        return (sha, self.commits[sha]) if sha in self.commits else None


def git_blob_sha(content: bytes) -> str:
    """The git blob id of a file (what the Hub reports as `oid` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """The server's state plus a ThreadingHTTPServer bound to 127.0.0.1 on a free port."""

    def __init__(self, token: str, user: str = "tester", refused_orgs: tuple[str, ...] = ("refused-org",)):
        self.token = token
        self.user = user
        self.refused_orgs = refused_orgs
        self.repos: dict[tuple[str, str], Repo] = {}
        self.received: list[bytes] = []  # request paths and bodies (not headers), for leak scans
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """Base URL to put in HF_ENDPOINT."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "models") -> dict[str, bytes]:
        """The files of a repository at a revision (test helper)."""
        found = self.repos[(repo_type, repo_id)].snapshot(rev)
        assert found is not None, f"{repo_id}@{rev} does not exist"
        return found[1]


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        # -- plumbing -------------------------------------------------------------------------
        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body if body is not None else {}).encode()
            self.send_response(status)
            for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _body(self) -> bytes:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hub.lock:
                hub.received.append(self.path.encode() + b"\n" + body)
            return body

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {hub.token}"

        def _repo(self, match: re.Match[str], write: bool = False) -> Repo | None:
            repo = hub.repos.get((match["type"] or "models", match["repo"]))
            if repo is None or (repo.private and not self._authorized()):
                self._error(404, "RepoNotFound", f"Repository {match['repo']} not found")
                return None
            if write and not self._authorized():
                self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
                return None
            return repo

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            self.query = parse_qs(url.query)
            self.body = self._body()
            for method, pattern, name in API_ROUTES:
                match = re.fullmatch(pattern, url.path)
                if match and method == ("GET" if self.command == "HEAD" else self.command):
                    return getattr(self, name)(match)
            match = RESOLVE.fullmatch(url.path)
            if match and self.command in ("GET", "HEAD"):
                return self.resolve(match)
            self._error(404, "NotFound", f"no route for {self.command} {url.path}")

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch

        def _rev(self, match: re.Match[str]) -> str:
            return unquote(match["rev"] or "main")

        # -- endpoints -----------------------------------------------------------------------------
        def whoami(self, _match: re.Match[str]) -> None:
            if not self._authorized():
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            self._send(200, {"type": "user", "name": hub.user, "orgs": [], "auth": {"type": "access_token"}})

        def validate_yaml(self, _match: re.Match[str]) -> None:
            """Card metadata check, as the client runs it before committing a README.md."""
            from huggingface_hub import ModelCard

            errors = []
            try:
                data = ModelCard(json.loads(self.body)["content"], ignore_metadata_errors=False).data
                for name in [data.base_model] if isinstance(data.base_model, str) else data.base_model or []:
                    if name.count("/") != 1 or name.startswith((".", "/", "~")):
                        errors.append(f'"base_model" must be a Hub model id, got "{name}"')
            except Exception as exc:  # any parse failure is a metadata error
                errors.append(f"{type(exc).__name__}: {exc}")
            self._send(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})

        def create_repo(self, _match: re.Match[str]) -> None:
            if not self._authorized():
                return self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            payload = json.loads(self.body or b"{}")
            org = payload.get("organization") or hub.user
            if org in hub.refused_orgs:
                return self._error(
                    403, "Forbidden", f"You don't have the rights to create a model under {org}"
                )
            repo_type = f"{payload.get('type') or 'model'}s"
            repo_id = f"{org}/{payload['name']}"
            if (repo_type, repo_id) in hub.repos:  # the real Hub also returns the url with a 409
                message = "You already created this model repo"
                return self._send(
                    409,
                    {"error": message, "url": f"{hub.endpoint}/{repo_id}"},
                    {"X-Error-Code": "Conflict", "X-Error-Message": message},
                )
            private = (
                payload.get("visibility", "private" if payload.get("private") else "public") == "private"
            )
            repo = Repo(repo_id, private)
            initial = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            sha = hashlib.sha1(f"{repo_id}:init".encode()).hexdigest()
            repo.commits[sha], repo.branches["main"] = initial, sha
            hub.repos[(repo_type, repo_id)] = repo
            self._send(200, {"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})

        def create_branch(self, match: re.Match[str]) -> None:
            repo = self._repo(match, write=True)
            if repo is None:
                return None
            branch = self._rev(match)
            if branch in repo.branches:
                return self._error(409, "Conflict", f"Branch {branch} already exists")
            start = json.loads(self.body or b"{}").get("startingPoint") or "main"
            found = repo.snapshot(start)
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {start}")
            repo.branches[branch] = found[0]
            self._send(200, {})

        def preupload(self, match: re.Match[str]) -> None:
            repo = self._repo(match, write=True)
            if repo is None:
                return None
            found = repo.snapshot(self._rev(match))
            current = found[1] if found else {}
            files = json.loads(self.body)["files"]
            self._send(
                200,
                {
                    "files": [
                        {
                            "path": f["path"],
                            "uploadMode": "regular",
                            "shouldIgnore": False,
                            "oid": git_blob_sha(current[f["path"]]) if f["path"] in current else None,
                        }
                        for f in files
                    ]
                },
            )

        def commit(self, match: re.Match[str]) -> None:
            repo = self._repo(match, write=True)
            if repo is None:
                return None
            branch = self._rev(match)
            if branch not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
            files = dict(repo.commits[repo.branches[branch]])
            for line in self.body.splitlines():
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    files = {
                        p: c for p, c in files.items() if not p.startswith(value["path"].rstrip("/") + "/")
                    }
                elif key == "lfsFile":
                    return self._error(400, "BadRequest", "this test hub stores regular files only")
            sha = hashlib.sha1(self.body + repo.branches[branch].encode()).hexdigest()
            repo.commits[sha], repo.branches[branch] = files, sha
            self._send(
                200,
                {
                    "commitUrl": f"{hub.endpoint}/{repo.repo_id}/commit/{sha}",
                    "commitOid": sha,
                    "success": True,
                },
            )

        def repo_info(self, match: re.Match[str]) -> None:
            repo = self._repo(match)
            if repo is None:
                return None
            found = repo.snapshot(self._rev(match))
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {self._rev(match)}")
            sha, files = found
            self._send(
                200,
                {
                    "id": repo.repo_id,
                    "sha": sha,
                    "private": repo.private,
                    "lastModified": None,
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                },
            )

        def refs(self, match: re.Match[str]) -> None:
            repo = self._repo(match)
            if repo is not None:
                branches = [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()
                ]
                self._send(200, {"branches": branches, "tags": [], "converts": []})

        def _entries(self, files: dict[str, bytes], paths: list[str]) -> list[dict[str, Any]]:
            folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
            entries = [
                {"type": "file", "path": p, "size": len(files[p]), "oid": git_blob_sha(files[p])}
                for p in paths
                if p in files
            ]
            return entries + [
                {"type": "directory", "path": p, "oid": "0" * 40} for p in paths if p in folders
            ]

        def _snapshot(self, match: re.Match[str]) -> Any:
            """The repository's snapshot at the asked revision; None once an error response was sent."""
            repo = self._repo(match)
            if repo is None:
                return None
            found = repo.snapshot(self._rev(match))
            if found is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {self._rev(match)}")
            return found

        def tree(self, match: re.Match[str]) -> None:
            found = self._snapshot(match)
            if found is None:
                return None
            prefix = unquote(match["path"] or "").strip("/")
            recursive = self.query.get("recursive", ["False"])[0].lower() == "true"
            candidates = set()
            for path in found[1]:
                if prefix and not path.startswith(prefix + "/"):
                    continue
                parts = path[len(prefix) + 1 if prefix else 0 :].split("/")
                base = f"{prefix}/" if prefix else ""
                depth = len(parts) if recursive else 1
                candidates.update(base + "/".join(parts[: i + 1]) for i in range(depth))
            self._send(200, self._entries(found[1], sorted(candidates)))

        def paths_info(self, match: re.Match[str]) -> None:
            found = self._snapshot(match)
            if found is None:
                return None
            if self.headers.get("Content-Type", "").startswith("application/json"):
                paths = json.loads(self.body).get("paths", [])
            else:
                paths = parse_qs(self.body.decode()).get("paths", [])
            self._send(200, self._entries(found[1], paths))

        def resolve(self, match: re.Match[str]) -> None:
            repo = self._repo(match)
            if repo is None:
                return None
            found = repo.snapshot(self._rev(match))
            path = unquote(match["path"])
            if found is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {self._rev(match)}")
            if path not in found[1]:
                return self._error(404, "EntryNotFound", f"{path} does not exist at {self._rev(match)}")
            content = found[1][path]
            self._send(
                200,
                content,
                {
                    "Content-Type": "application/octet-stream",
                    "X-Repo-Commit": found[0],
                    "ETag": f'"{git_blob_sha(content)}"',
                },
            )

    return Handler
