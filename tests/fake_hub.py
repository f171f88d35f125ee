"""A fake Hugging Face Hub on loopback, for tests only: the Hub's servers cannot be reached from
our machines. It keeps state like the real service (repos, revisions, files, private and gated
repos, tokens) and answers `GET /{owner}/{name}/resolve/{revision}/{path}` the way the Hub does,
including the `X-Error-Code` header (EntryNotFound, RevisionNotFound, RepoNotFound, GatedRepo)
that tells a missing file from a missing repo. Every request is logged for assertions.

It also answers what huggingface_hub's own `snapshot_download` and `list_repo_files` ask first:
`/api/models/{repo}/revision/{revision}` (the commit a branch points to) and
`/api/models/{repo}/tree/{revision}` (the files), and `HEAD` on resolve URLs with the commit,
ETag and size headers. Each revision has a commit hash that resolves like the branch.

Branches move: `push` makes a new commit on a branch (the old commit stays downloadable by its
hash), while a tag added with `add(..., revision="v1")` stays where it is.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit → path → content
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag → commit
    private: bool = False
    gated: bool = False


class FakeHub:
    def __init__(self, token: str = "hf_fake_token"):
        self.repos: dict[str, Repo] = {}
        self.token = token
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.gets: list[tuple[str, str | None]] = []  # the GET requests among them
        self.requests_allowed: int | None = (
            None  # then 429 Too Many Requests, as the Hub's rate limit
        )
        self.latency = (
            0.0  # seconds each answer takes (the real Hub's are tens of milliseconds away)
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def serve_to(self, monkeypatch) -> "FakeHub":
        """Point huggingface_hub and the deployer at this fake, online and with no token of the
        machine's own (a test that wants one sets HF_TOKEN itself)."""
        import huggingface_hub

        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", self.url)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", "/nonexistent/token")
        return self

    def add(
        self,
        repo: str,
        files: dict[str, str],
        revision: str = "main",
        private: bool = False,
        gated: bool = False,
    ) -> None:
        entry = self.repos.setdefault(repo, Repo(private=private, gated=gated))
        commit = entry.refs.setdefault(revision, self.commit(repo, revision))
        entry.commits.setdefault(commit, {}).update({k: v.encode() for k, v in files.items()})

    def push(self, repo: str, files: dict[str, str], revision: str = "main") -> str:
        """A new commit on branch `revision`, its files those of the branch's last commit with
        `files` changed: the branch moves to it. Returns the new commit."""
        entry = self.repos[repo]
        before = entry.commits[entry.refs[revision]]
        commit = hashlib.sha1(f"{repo}@{revision}#{len(entry.commits)}".encode()).hexdigest()
        entry.commits[commit] = {**before, **{k: v.encode() for k, v in files.items()}}
        entry.refs[revision] = commit
        return commit

    def head(self, repo: str, revision: str = "main") -> str:
        """The commit branch or tag `revision` points to now."""
        return self.repos[repo].refs[revision]

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def commit(repo_id: str, revision: str) -> str:
        """The commit hash a revision of a repo points to."""
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def downloaded(self, repo_id: str) -> list[str]:
        """The files of `repo_id` fetched so far (GET on resolve URLs), in order."""
        prefix = f"/{repo_id}/resolve/"
        return [path.split("/", 5)[5] for path, _ in self.gets if path.startswith(prefix)]

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        self.requests.append((path, authorization))
        time.sleep(self.latency)
        if self.requests_allowed is not None and len(self.requests) > self.requests_allowed:
            return 429, {"Retry-After": "300"}, b'{"error": "You have exceeded our rate limit"}'
        path = path.split("?", 1)[0]
        api = path.startswith("/api/models/")
        parts = path.removeprefix("/api/models").lstrip("/").split("/", 4)
        known = ("revision", "tree") if api else ("resolve",)
        if len(parts) < 4 or parts[2] not in known:
            return 404, {}, b"not a URL of this fake Hub"
        repo_id, revision = f"{parts[0]}/{parts[1]}", parts[3]
        repo = self.repos.get(repo_id)
        authorised = authorization == f"Bearer {self.token}"
        if repo is None or (repo.private and not authorised):
            return 401, {"X-Error-Code": "RepoNotFound"}, b'{"error": "Repository not found"}'
        if repo.gated and not authorised:
            return (
                403,
                {"X-Error-Code": "GatedRepo"},
                b'{"error": "Access to this repo is restricted"}',
            )
        commit = repo.refs.get(revision) or (revision if revision in repo.commits else None)
        if commit is None:
            return 404, {"X-Error-Code": "RevisionNotFound"}, b'{"error": "Invalid rev id"}'
        files = repo.commits[commit]
        if api and parts[2] == "revision":
            info = {
                "id": repo_id,
                "sha": commit,
                "private": repo.private,
                "gated": repo.gated,
                "siblings": [{"rfilename": f} for f in sorted(files)],
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        if api:  # the tree, always listed whole (recursive, one page)
            folder = parts[4].rstrip("/") + "/" if len(parts) > 4 and parts[4] else ""
            tree = [
                {
                    "type": "file",
                    "oid": hashlib.sha1(content).hexdigest(),
                    "size": len(content),
                    "path": f,
                }
                for f, content in sorted(files.items())
                if f.startswith(folder)
            ]
            return 200, {"Content-Type": "application/json"}, json.dumps(tree).encode()
        content = files.get(parts[4]) if len(parts) > 4 else None
        if content is None:
            return 404, {"X-Error-Code": "EntryNotFound"}, b'{"error": "Entry not found"}'
        return (
            200,
            {
                "Content-Type": "application/octet-stream",
                "X-Repo-Commit": commit,
                "ETag": f'"{hashlib.sha1(content).hexdigest()}"',
            },
            content,
        )

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                hub.gets.append((self.path, self.headers.get("Authorization")))
                self._reply(send_body=True)

            def do_HEAD(self):
                self._reply(send_body=False)

            def _reply(self, send_body: bool):
                status, headers, body = hub._answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler
