"""What `smoke` talks to: URLs with credentials or without a scheme, credentials HTTP refuses,
planted local-server state files that would send the API key elsewhere, and hostile servers that
drip their reply or answer with terminal escapes."""

from __future__ import annotations

import json
import sys

import pytest


def test_smoke_of_a_url_without_a_scheme_fails_cleanly(cli):
    code, out, err = cli("smoke", "example.invalid:99999", "--timeout", "1")
    assert code in (1, 2) and "Traceback" not in err and "internal error" not in err


def test_smoke_never_prints_credentials_in_the_url(cli):
    code, out, err = cli("smoke", "http://user:s3cret-pw@127.0.0.1:9/v1", "--timeout", "1")
    assert code == 1 and "s3cret-pw" not in out + err


def test_a_credential_http_refuses_is_never_quoted(cli, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-live-SENTINEL\n")
    code, out, err = cli("smoke", "http://127.0.0.1:9", "--timeout", "1")
    assert code == 1 and "SENTINEL" not in out + err and "a credential" in out


@pytest.mark.parametrize("value", ["nan", "0", "-5", "inf"])
def test_timeouts_must_be_finite_and_positive(cli, value):
    assert cli("smoke", "http://127.0.0.1:9", "--timeout", value)[0] == 2


@pytest.mark.parametrize(
    "state",
    [
        {"url": "http://127.0.0.1:18778", "pid": 0},
        {"url": "http://127.0.0.1:18778", "pid": -1},
        {"url": 5, "pid": 1},
        {"url": "http://attacker.example:80", "pid": 1},
        {"url": "http://127.0.0.1:1", "pid": True},
        [],
        "x",
    ],
)
def test_a_planted_state_file_is_not_believed(project, cli, monkeypatch, state):
    """smoke sends the API key to the URL of a running local server's state file."""
    project.deployment("a")
    project.write("build/a/local-server.json", json.dumps(state))
    monkeypatch.setenv("VLLM_API_KEY", "sk-SENTINEL")
    code, out, err = cli("smoke", "a", "--timeout", "1")
    assert code == 2 and "no known URL for 'a'" in err and "internal error" not in err


def test_a_state_file_whose_pid_is_not_vllm_is_ignored(tmp_path):
    import subprocess

    from deployer.local.server import read_state, write_state

    other = subprocess.Popen(["sleep", "30"])
    try:
        write_state(tmp_path, "http://127.0.0.1:1", other.pid, ["m"])
        assert read_state(tmp_path) is None
    finally:
        other.kill()


def test_a_state_file_naming_someone_elses_vllm_process_is_ignored(tmp_path):
    import subprocess

    from deployer.local.server import read_state, write_state

    # A process with "vllm" on its command line, as a user's own server would have.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "vllm"])
    try:
        planted = {"url": "http://127.0.0.1:1", "pid": other.pid, "models": ["m"]}
        for started in (None, 0, "x"):
            (tmp_path / "local-server.json").write_text(json.dumps(planted | {"started": started}))
            assert read_state(tmp_path) is None
        write_state(tmp_path, "http://127.0.0.1:1", other.pid, ["m"])  # what serve --local writes
        assert read_state(tmp_path)["pid"] == other.pid
    finally:
        other.kill()


def test_a_server_that_drips_its_reply_cannot_hold_a_smoke_request():
    import socket
    import threading
    import time

    from deployer.local.smoke import Connection, HttpError, request

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while not stop.is_set():  # one byte every 0.3 s: each read is quick, the reply never ends
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.3)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    try:
        with pytest.raises(HttpError, match="no complete reply within 2 s"):
            request(
                Connection(f"http://127.0.0.1:{listener.getsockname()[1]}"),
                "GET",
                "/v1/models",
                timeout=2,
            )
    finally:
        stop.set()
        listener.close()


def test_a_hostile_servers_status_line_reaches_the_terminal_escaped():
    # "waiting for .../health: <why>" quotes the server's status line: raw, its ESC, CR and BEL
    # would rewrite what the terminal (or a CI log) shows.
    import socket
    import threading

    from deployer.local.smoke import Connection, wait_healthy

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"XTTP/1.1 200 OK \x1b[2K\r\x1b[32m  ok  health \x1b]0;pwned\x07\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        result = wait_healthy(
            Connection(f"http://127.0.0.1:{listener.getsockname()[1]}"), timeout=1.5, interval=0.5
        )
    finally:
        listener.close()
    assert not result.ok and "BadStatusLine" in result.detail and "\\x1b[2K\\r" in result.detail
    assert not any(c in result.detail for c in "\x1b\r\x07\n"), (
        result.detail
    )  # progress lines quote the same text
