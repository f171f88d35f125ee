"""A fake Hugging Face Hub on loopback, for tests only: the Hub's servers cannot be reached from
our machines. It keeps state like the real service (repos, revisions, files, private and gated
repos, tokens) and answers `GET /{owner}/{name}/resolve/{revision}/{path}` the way the Hub does,
including the `X-Error-Code` header (EntryNotFound, RevisionNotFound, RepoNotFound, GatedRepo)
that tells a missing file from a missing repo. Every request is logged for assertions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Repo:
    revisions: dict[str, dict[str, bytes]] = field(default_factory=dict)  # revision → path → content
    private: bool = False
    gated: bool = False


class FakeHub:
    def __init__(self, token: str = "hf_fake_token"):
        self.repos: dict[str, Repo] = {}
        self.token = token
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, repo: str, files: dict[str, str], revision: str = "main", private: bool = False, gated: bool = False) -> None:
        entry = self.repos.setdefault(repo, Repo(private=private, gated=gated))
        entry.revisions.setdefault(revision, {}).update({k: v.encode() for k, v in files.items()})

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, authorization))
        parts = path.lstrip("/").split("/", 4)
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, {}, b"not a resolve URL"
        repo_id, revision, file = f"{parts[0]}/{parts[1]}", parts[3], parts[4]
        repo = self.repos.get(repo_id)
        authorised = authorization == f"Bearer {self.token}"
        if repo is None or (repo.private and not authorised):
            return 401, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'
        if repo.gated and not authorised:
            return 403, {"X-Error-Code": "GatedRepo"}, b'{"error": "Access to this repo is restricted"}'
        if revision not in repo.revisions:
            return 404, {"X-Error-Code": "RevisionNotFound"}, b'{"error": "Invalid rev id"}'
        content = repo.revisions[revision].get(file)
        if content is None:
            return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'
        return 200, {"Content-Type": "application/octet-stream"}, content

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, headers, body = hub._answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
