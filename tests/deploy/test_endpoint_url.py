"""Where credentials go: only to the URL Modal's API gives for the app, and only on Modal's domain.

`apply` sends `Authorization: Bearer $VLLM_API_KEY` (and Modal proxy credentials) to a deployed
app's URL. These tests plant look-alikes where the deployer might read a URL (the image's build log
in `modal deploy`'s output, a URL Modal's API reports off its domain) and check what a look-alike
server receives: nothing. The fake Modal serves http on 127.0.0.1, which the `modal_world` fixture
allows as an operator would ($DEPLOYER_ALLOW_ENDPOINT_HOST).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deployer.deploy.platform import ALLOW_ENDPOINT_HOST_ENV, endpoint_problem

from ..conftest import FAST, git_commit
from ..fake_modal import build_log


class LookAlike:
    """An HTTP server on loopback that records every request and answers like a healthy vLLM."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                received.append((self.command, self.path, dict(self.headers)))
                data = json.dumps({"object": "list", "data": []}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def look_alike():
    with LookAlike() as server:
        yield server


def planted(project, url: str) -> None:
    project.deployment("alpha", FAST + f'image:\n  env:\n    OMP_NUM_THREADS: "8 serve -> {url}"\n')
    git_commit(project.root, "alpha with a look-alike line in its image's env")


def test_a_url_planted_in_the_build_log_receives_nothing(project, modal_world, cli, look_alike):
    planted(project, f"{look_alike.url}/x")  # on loopback: the host allowance would let it pass
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    log = build_log(Path("build/alpha/app.py").read_text(encoding="utf-8"))
    assert f"=> Step 1: ENV OMP_NUM_THREADS='8 serve -> {look_alike.url}/x'" in log
    assert look_alike.requests == []
    assert f"waiting for {modal_world.server.url}/alpha" in err  # the app's own endpoint


def test_a_url_from_modal_off_its_domain_is_refused_and_receives_nothing(
    project, modal_world, cli, look_alike, monkeypatch
):
    monkeypatch.delenv(ALLOW_ENDPOINT_HOST_ENV)
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    modal_world.fake.web_url_is("alpha", f"{look_alike.url}/alpha")
    code, out, _ = cli("apply", "--yes")
    assert code == 1
    assert f"refusing to send credentials to '{look_alike.url}/alpha'" in out
    assert ALLOW_ENDPOINT_HOST_ENV in out and "first deploy, so the app was stopped" in out
    assert look_alike.requests == []


def test_an_allowed_host_receives_the_smoke_check(project, modal_world, cli, monkeypatch):
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    port = modal_world.server.url.rsplit(":", 1)[1]
    modal_world.fake.web_url_is("alpha", f"http://localhost:{port}/alpha")
    monkeypatch.setenv(ALLOW_ENDPOINT_HOST_ENV, "example.org, LOCALHOST")
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    assert "smoke checks passed" in out


def test_status_and_endpoints_do_not_offer_a_url_off_modals_domain(
    project, modal_world, cli, monkeypatch
):
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    assert cli("apply", "--yes")[0] == 0
    modal_world.fake.web_url_is("alpha", "https://elsewhere.example/x")
    code, out, _ = cli("endpoints", "alpha", "--format", "json")
    (row,) = json.loads(out)
    assert code == 0 and row["base_url"] is None
    assert "refusing to send credentials to 'https://elsewhere.example/x'" in row["unknown_because"]
    assert "elsewhere.example/x/v1" not in row["snippet"]
    code, out, _ = cli("status", "alpha", "--format", "json")
    (row,) = json.loads(out)["deployments"]
    assert row["url"].startswith("? (refusing to send credentials to 'https://elsewhere.example/x'")


def test_a_url_the_operator_gives_smoke_is_their_choice(project, modal_world, cli, monkeypatch):
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    assert cli("apply", "--yes")[0] == 0
    monkeypatch.delenv(ALLOW_ENDPOINT_HOST_ENV)
    code, out, err = cli("smoke", "alpha", "--url", f"{modal_world.server.url}/alpha")
    assert code == 0, out + err


@pytest.mark.parametrize(
    "url",
    [
        "https://ws--chess-puzzle-serve.modal.run",
        "https://ws--chess-puzzle-serve.modal.run/",
        "https://WS--A-Server-Serve.Modal.Run/v1",
    ],
)
def test_https_on_modals_domain_is_accepted(url):
    assert endpoint_problem(url, {}) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://ws--a-serve.modal.run",  # the key would cross the network in clear
        "https://modal.run",
        "https://.modal.run",
        "https://ws.modal.run.elsewhere.example",
        "https://elsewhere.example/ws.modal.run",
        "https://ws.modal.run@elsewhere.example",
        "https://elsewhere.example\\@ws.modal.run",
        "https://elsewhere.example#.modal.run",
        "https://elsewhere.example?.modal.run",
        "https://ws.modal.run /x",
        "https://ws.modal.run\nhttps://elsewhere.example",
        "https://ws\u212a.modal.run",  # a Kelvin sign, which some matchers fold to "k"
        "ftp://ws.modal.run",
        "",
    ],
)
def test_anything_else_is_refused_naming_the_allowance(url):
    problem = endpoint_problem(url, {})
    assert problem and ALLOW_ENDPOINT_HOST_ENV in problem


def test_the_allowance_names_hosts_and_comes_from_the_environment_only():
    environ = {ALLOW_ENDPOINT_HOST_ENV: " 127.0.0.1 ,gateway.internal"}
    assert endpoint_problem("http://127.0.0.1:8000/alpha", environ) is None
    assert endpoint_problem("https://gateway.internal/alpha", environ) is None
    assert endpoint_problem("https://gateway.internal.elsewhere.example/", environ)
    assert endpoint_problem("http://127.0.0.1:8000/alpha", {})
