"""`fetch`: one request, bounded by one deadline and a size, with credentials kept on their host.
Against servers on loopback, hostile ones included."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deployer.core.http import ReplyTimeout, _CredentialSafeRedirects, fetch


@contextlib.contextmanager
def serving(answer):
    """A loopback HTTP server; `answer(handler)` replies to every request. Yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            answer(self)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reply(handler, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


@contextlib.contextmanager
def dripping(prefix: bytes, seconds: float = 30.0):
    """A server that sends `prefix`, then one byte every 0.2 s for `seconds`: each read is quick,
    the reply does not end. Yields (URL, an event set once its connection was shut)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    shut = threading.Event()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(prefix)
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                try:
                    conn.sendall(b"x")
                except OSError:
                    shut.set()
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", shut
    finally:
        listener.close()


@pytest.mark.parametrize(
    "prefix",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n",  # in the body
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # in the headers
        b"",  # in the status line
    ],
    ids=["body", "headers", "status-line"],
)
def test_a_dripping_server_is_cut_off_at_the_deadline_and_its_connection_shut(prefix):
    with dripping(prefix) as (url, shut):
        with pytest.raises(ReplyTimeout, match="no complete reply within 1 s"):
            fetch(url, timeout=1, max_bytes=10_000_000)
        assert shut.wait(10)  # the abandoned exchange does not read on


def test_the_deadline_spans_every_redirect():
    # Each hop answers within the timeout; together they take longer.
    def answer(handler):
        hop = int(handler.path.rsplit("/", 1)[1])
        time.sleep(0.4)
        reply(handler, 302, headers={"Location": f"/hop/{hop + 1}"})

    with serving(answer) as url:
        with pytest.raises(ReplyTimeout):
            fetch(f"{url}/hop/0", timeout=1.5, max_bytes=1000)


def test_an_http_error_is_returned_with_its_status_headers_and_body():
    def answer(handler):
        reply(handler, 404, b'{"error": "no"}', {"X-Error-Code": "EntryNotFound"})

    with serving(answer) as url:
        response = fetch(url + "/x", timeout=5, max_bytes=1000)
    assert (response.status, response.body, response.truncated) == (404, b'{"error": "no"}', False)
    assert response.headers.get("x-error-code") == "EntryNotFound"


def test_the_method_headers_and_body_are_sent():
    seen = {}

    def answer(handler):
        length = int(handler.headers["Content-Length"])
        seen.update(
            method=handler.command,
            kind=handler.headers["Content-Type"],
            body=handler.rfile.read(length),
        )
        reply(handler, 200, b"ok")

    with serving(answer) as url:
        response = fetch(
            url,
            method="POST",
            headers={"Content-Type": "application/json"},
            body=b"{}",
            timeout=5,
            max_bytes=10,
        )
    assert response.status == 200 and response.body == b"ok"
    assert seen == {"method": "POST", "kind": "application/json", "body": b"{}"}


@pytest.mark.parametrize(("size", "truncated"), [(100, False), (101, True), (300_000, True)])
def test_a_body_is_kept_up_to_max_bytes_and_marked_when_there_was_more(size, truncated):
    with serving(lambda handler: reply(handler, 200, b"y" * size)) as url:
        response = fetch(url, timeout=5, max_bytes=100)
    assert response.body == b"y" * min(size, 100) and response.truncated is truncated


def test_an_unreachable_server_raises_an_oserror():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(OSError) as raised:
        fetch(f"http://127.0.0.1:{closed}/", timeout=5, max_bytes=10)
    assert not isinstance(raised.value, ReplyTimeout)


def test_credentials_are_dropped_on_a_redirect_to_another_server_only():
    received = {}

    def target(handler):
        received[handler.path] = handler.headers.get("Authorization")
        reply(handler, 200, b"ok")

    with serving(target) as other:

        def redirect(handler):
            if handler.path == "/same":
                target(handler)
            else:
                location = "/same" if handler.path == "/to-same" else f"{other}/other"
                reply(handler, 302, headers={"Location": location})

        with serving(redirect) as url:
            for path in ("/to-same", "/to-other"):
                response = fetch(
                    url + path,
                    headers={"Authorization": "Bearer sentinel"},
                    timeout=5,
                    max_bytes=10,
                )
                assert response.status == 200
    assert received == {"/same": "Bearer sentinel", "/other": None}


@pytest.mark.parametrize(
    ("newurl", "kept"),
    [
        (
            "http://models.example/v1/models",
            False,
        ),  # https -> http on the same host: the key would travel in clear text
        ("https://models.example:8443/v1/models", False),  # another port is another server
        ("https://models.example/v2/models", True),
    ],
)
def test_credentials_follow_a_redirect_only_to_the_same_scheme_and_host(newurl, kept):
    original = urllib.request.Request(
        "https://models.example/v1/models", headers={"Authorization": "Bearer sentinel"}
    )
    new = _CredentialSafeRedirects().redirect_request(original, None, 302, "Found", {}, newurl)
    assert new.has_header("Authorization") is kept
