"""The API key middleware a rendered app writes out for vLLM (templates/vllm_auth_guard.py).

vLLM checks its key only on /v1 and a few other prefixes. With `auth.api_key`, the app adds this
middleware (last of its --middleware flags) and writes it to a folder on vLLM's import path. Here
the module the app writes is imported and called as an ASGI app; tests/test_local_vllm.py sends the
same requests to real vLLM.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest

from deployer.local import local_command, without_auth_guard
from deployer.pipeline import check_paths
from deployer.render import render, write

from .conftest import MINIMAL, REPO, import_app

KEY = "guard-sentinel-key-9d2e"


def rendered_app(project, text: str = MINIMAL):
    project.deployment("a", text)
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    (deployment,) = checked.deployments
    app = render(deployment, Path("build"))
    write(app)
    return import_app(app.path)


@pytest.fixture
def guard(project, tmp_path, monkeypatch):
    """The middleware class from the module the rendered app writes, imported as vLLM would."""
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    folder = tmp_path / "guard"
    folder.mkdir()
    rendered_app(project).vllm_environment(str(folder))
    return load_guard(folder).RequireApiKey


def load_guard(folder: Path):
    spec = importlib.util.spec_from_file_location("deployer_auth_guard_under_test", folder / "deployer_auth_guard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Inner:
    """The app behind the middleware (vLLM's routes): records what reached it."""

    def __init__(self):
        self.reached = []

    async def __call__(self, scope, receive, send):
        self.reached.append(scope.get("path", scope["type"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(middleware_class, path="/invocations", method="POST", authorization: bytes | None = None, kind="http", headers=()):
    inner = Inner()
    sent = []
    headers = [(b"host", b"x"), *headers] + ([(b"authorization", authorization)] if authorization is not None else [])
    scope = {"type": kind, "path": path, "method": method, "headers": headers}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware_class(inner)(scope, receive, send))
    return inner.reached, sent


@pytest.mark.parametrize("path", ["/invocations", "/tokenize", "/detokenize", "/metrics", "/v1/models", "/health/", "//health", "/docs"])
def test_every_route_but_health_is_refused_without_the_key(guard, path):
    reached, sent = call(guard, path)
    assert reached == []
    assert sent[0]["status"] == 401 and (b"www-authenticate", b"Bearer") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"error": "Unauthorized"}'


@pytest.mark.parametrize("authorization", [b"Bearer wrong", b"Basic " + KEY.encode(), b"Bearer", b"", b"Bearer " + KEY.encode() + b" ", KEY.encode(), b"Bearer " + KEY[:-1].encode()])
def test_a_wrong_or_malformed_key_is_refused(guard, authorization):
    reached, sent = call(guard, authorization=authorization)
    assert reached == [] and sent[0]["status"] == 401


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER"])
def test_the_key_as_a_bearer_token_passes(guard, scheme):
    reached, sent = call(guard, "/tokenize", authorization=scheme + b" " + KEY.encode())
    assert reached == ["/tokenize"] and sent[0]["status"] == 200


def test_the_first_authorization_header_decides(guard):
    inner, sent = Inner(), []
    scope = {"type": "http", "path": "/tokenize", "method": "POST", "headers": [(b"Authorization", b"Bearer wrong"), (b"authorization", b"Bearer " + KEY.encode())]}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(inner)(scope, None, send))
    assert inner.reached == [] and sent[0]["status"] == 401


def test_health_preflights_and_lifespan_pass_without_the_key(guard):
    assert call(guard, "/health", method="GET")[0] == ["/health"]
    preflight = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    assert call(guard, "/invocations", method="OPTIONS", headers=preflight)[0] == ["/invocations"]
    assert call(guard, kind="lifespan")[0] == ["/invocations"]


@pytest.mark.parametrize("headers", [[], [(b"origin", b"https://app.example")], [(b"access-control-request-method", b"POST")]])
def test_an_options_request_that_is_not_a_preflight_needs_the_key(guard, headers):
    # vLLM's /metrics mount answers any method: OPTIONS /metrics returned the metrics.
    reached, sent = call(guard, "/metrics", method="OPTIONS", headers=headers)
    assert reached == [] and sent[0]["status"] == 401


def test_a_websocket_without_the_key_is_closed(guard):
    reached, sent = call(guard, "/v1/realtime", method=None, kind="websocket")
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]


def test_without_a_key_the_guard_refuses_to_load(project, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    rendered_app(project).vllm_environment(str(tmp_path))
    monkeypatch.delenv("VLLM_API_KEY")
    with pytest.raises(RuntimeError, match="VLLM_API_KEY is not set"):
        load_guard(tmp_path)
    monkeypatch.setenv("VLLM_API_KEY", "")
    with pytest.raises(RuntimeError, match="VLLM_API_KEY is not set"):
        load_guard(tmp_path)


def test_the_app_writes_the_template_file_and_puts_its_folder_first_on_the_import_path(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    environment = rendered_app(project).vllm_environment(str(tmp_path))
    assert (tmp_path / "deployer_auth_guard.py").read_bytes() == (REPO / "templates" / "vllm_auth_guard.py").read_bytes()
    assert environment["PYTHONPATH"] == f"{tmp_path}:/elsewhere"
    monkeypatch.delenv("PYTHONPATH")
    assert rendered_app(project).vllm_environment(str(tmp_path))["PYTHONPATH"] == str(tmp_path)


def test_the_guard_is_the_last_middleware_after_the_yamls_own(project):
    app = rendered_app(project, MINIMAL.replace('version: "0.11.2"', 'version: "0.11.2"\n  args: {middleware: [mine.Audit]}'))
    assert app.VLLM_FLAGS[-4:] == ["--middleware", "mine.Audit", "--middleware", "deployer_auth_guard.RequireApiKey"]


@pytest.mark.parametrize("auth", ["{proxy: true}", "none"])
def test_without_an_api_key_there_is_no_guard(project, auth):
    app = rendered_app(project, MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", f"auth: {auth}"))
    assert "--middleware" not in app.VLLM_FLAGS and not hasattr(app, "vllm_environment")


def test_serving_locally_without_a_key_leaves_the_guard_out_and_says_so(project, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rendered_app(project)
    local = local_command(project.root / "build" / "a" / "app.py", sys.executable, 8001)
    assert local.argv[-6:-4] == ["--middleware", "deployer_auth_guard.RequireApiKey"] and local.environment is not None
    keyed, note = without_auth_guard(local, {"VLLM_API_KEY": KEY})
    assert keyed == local and note is None
    keyless, note = without_auth_guard(local, {})
    assert "--middleware" not in keyless.argv and keyless.environment is None
    assert keyless.argv == [token for token in local.argv if token not in ("--middleware", "deployer_auth_guard.RequireApiKey")]
    assert "VLLM_API_KEY is not set here" in note
