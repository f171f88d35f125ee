"""One HTTP request, bounded in time and size, with credentials that stay on their host.

The deployer reads small replies from servers it does not control (the Hub, a deployed or local
endpoint), so `fetch` promises three things to every caller:

- Credentials (Authorization, Modal proxy headers) are dropped when a redirect leaves the scheme
  and host they were sent to: urllib keeps every header on a redirect, and the Hub redirects large
  files to CDN hosts.
- The whole request (resolving the name, connecting, every redirect, the headers, the body) ends
  by one deadline. A socket timeout bounds each read only, and a server sending a byte every few
  seconds would otherwise hold the caller for as long as it likes. The exchange runs in a daemon
  thread the caller stops waiting for at the deadline; its sockets are then shut down, so that
  thread ends too instead of reading on.
- At most `max_bytes` of the body are kept: a server can answer without end.

An HTTP error status is an answer like any other, returned rather than raised.
"""

from __future__ import annotations

import email.message
import functools
import http.client
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

CREDENTIAL_HEADERS = ("Authorization", "Modal-key", "Modal-secret")  # as urllib capitalises them
_CHUNK_BYTES = 64 * 1024  # read at a time, so that a small limit never allocates a large buffer


@dataclass(frozen=True)
class Response:
    status: int
    headers: email.message.Message = field(repr=False)  # names are case-insensitive
    body: bytes  # at most the `max_bytes` asked for
    truncated: bool = False  # the server sent more than `max_bytes`


class ReplyTimeout(TimeoutError):
    """No complete reply came by the deadline."""

    def __init__(self, seconds: float):
        super().__init__(f"no complete reply within {seconds:.0f} s")


def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float,
    max_bytes: int,
) -> Response:
    """The server's answer to one request, within `timeout` seconds in all.

    Raises ReplyTimeout at the deadline; OSError (urllib.error.URLError among them) or
    http.client.HTTPException when the server cannot be reached or its reply breaks off or is not
    HTTP; ValueError for a URL or a header value http.client refuses (its message quotes the
    value: a caller sending credentials must not print it)."""
    deadline = _Deadline(timeout)
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    request.deadline = deadline  # type: ignore[attr-defined]  (read by the handlers below)
    outcome: queue.Queue = queue.Queue(maxsize=1)

    def exchange() -> None:
        try:
            outcome.put(("ok", _exchange(request, max_bytes)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.put(("error", exc))

    threading.Thread(target=exchange, name="deployer fetch", daemon=True).start()
    try:
        kind, value = outcome.get(timeout=max(deadline.at - time.monotonic(), 0.0))
    except queue.Empty:
        deadline.expire()
        raise ReplyTimeout(timeout) from None
    if kind == "error":
        raise value
    return value


def _exchange(request: urllib.request.Request, max_bytes: int) -> Response:
    try:
        response = _opener().open(request)
    except urllib.error.HTTPError as error:  # an answer, with its status
        response = error
    try:
        body = _read(response, max_bytes + 1)
        return Response(response.status, response.headers, body[:max_bytes], len(body) > max_bytes)
    finally:
        response.close()


def _read(response, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = response.read(min(_CHUNK_BYTES, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _Deadline:
    """When one fetch ends, and the sockets to shut down then."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._passed = False

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise ReplyTimeout(self.seconds)
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            passed = self._passed
        if passed:
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self._passed = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # A blocked read then returns at once. The plain socket's shutdown, not SSLSocket's: that one
    # also drops the TLS state under the thread still reading through it.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed already
        pass


class _Watched:
    """A connection whose socket the fetch's deadline shuts down."""

    def __init__(self, *args, deadline: _Deadline, **kwargs):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        self._deadline.watch(self.sock)


class _WatchedHTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


_WATCHED = {
    http.client.HTTPConnection: _WatchedHTTPConnection,
    http.client.HTTPSConnection: _WatchedHTTPSConnection,
}


class _DeadlineOpen:
    """Each connection of a fetch (one per redirect) gets the time left as its socket timeout,
    and its socket watched by the deadline."""

    def do_open(self, http_class, req, **http_conn_args):
        deadline = getattr(req, "deadline", None)
        if deadline is not None:
            req.timeout = deadline.remaining()
            http_class = functools.partial(_WATCHED[http_class], deadline=deadline)
        return super().do_open(http_class, req, **http_conn_args)


class _DeadlineHTTPHandler(_DeadlineOpen, urllib.request.HTTPHandler):
    pass


class _DeadlineHTTPSHandler(_DeadlineOpen, urllib.request.HTTPSHandler):
    pass


class _CredentialSafeRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        # Another host, or the same one over another scheme (https -> http would send the key in
        # clear text, and port 80 may be someone else's server).
        before, after = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (after.scheme, after.netloc) != (before.scheme, before.netloc):
            for name in CREDENTIAL_HEADERS:
                new.remove_header(name)
        if hasattr(req, "deadline"):
            new.deadline = req.deadline
        return new


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        _CredentialSafeRedirects, _DeadlineHTTPHandler, _DeadlineHTTPSHandler
    )
