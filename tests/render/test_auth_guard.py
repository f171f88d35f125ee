"""The API key middleware a rendered app writes out for vLLM (templates/vllm_auth_guard.py).

vLLM checks its key only on /v1 and a few other prefixes. With `auth.api_key`, the app adds this
middleware (last of its --middleware flags) and writes it to a folder on vLLM's import path. Here
the module the app writes is imported and called as an ASGI app; tests/local/test_local_vllm.py sends the
same requests to real vLLM.

vLLM's process never holds the key: the app leaves credential-like variables out of its
environment (`vllm_environment()`) and gives the middleware a salted digest (`with_auth_guard()`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths
from deployer.local.server import local_command, without_auth_guard
from deployer.render.app import render
from deployer.render.output import write
from deployer.vllm.argv import AUTH_DIGEST_VARIABLE

from ..conftest import MINIMAL, REPO, import_app
from .asgi import run_middleware

KEY = "guard-sentinel-key-9d2e"


def rendered_app(project, text: str = MINIMAL):
    project.deployment("a", text)
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    (deployment,) = checked.deployments
    app = render(deployment, Path("build"))
    write(app)
    return import_app(app.path)


def vllm_side(environment: dict, monkeypatch) -> None:
    """This process's environment made the one the app gives vLLM."""
    for name in list(os.environ):
        if name not in environment:
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def guard(project, tmp_path, monkeypatch):
    """The middleware class from the module the rendered app writes, imported as vLLM would: in
    the environment the app gives vLLM, which has no VLLM_API_KEY."""
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    folder = tmp_path / "guard"
    folder.mkdir()
    app = rendered_app(project)
    vllm_side(app.with_auth_guard(app.vllm_environment(), str(folder)), monkeypatch)
    assert "VLLM_API_KEY" not in os.environ
    return load_guard(folder).RequireApiKey


def load_guard(folder: Path):
    spec = importlib.util.spec_from_file_location(
        "deployer_auth_guard_under_test", folder / "deployer_auth_guard.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(
    middleware_class,
    path="/invocations",
    method="POST",
    authorization: bytes | None = None,
    kind="http",
    headers=(),
):
    headers = [(b"host", b"x"), *headers] + (
        [(b"authorization", authorization)] if authorization is not None else []
    )
    scope = {"type": kind, "path": path, "method": method, "headers": headers}
    return run_middleware(middleware_class, scope)


@pytest.mark.parametrize(
    "path",
    [
        "/invocations",
        "/tokenize",
        "/detokenize",
        "/metrics",
        "/v1/models",
        "/health/",
        "//health",
        "/docs",
    ],
)
def test_every_route_but_health_is_refused_without_the_key(guard, path):
    reached, sent = call(guard, path)
    assert reached == []
    assert sent[0]["status"] == 401 and (b"www-authenticate", b"Bearer") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"error": "Unauthorized"}'


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer wrong",
        b"Basic " + KEY.encode(),
        b"Bearer",
        b"",
        b"Bearer " + KEY.encode() + b" ",
        KEY.encode(),
        b"Bearer " + KEY[:-1].encode(),
    ],
)
def test_a_wrong_or_malformed_key_is_refused(guard, authorization):
    reached, sent = call(guard, authorization=authorization)
    assert reached == [] and sent[0]["status"] == 401


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER"])
def test_the_key_as_a_bearer_token_passes(guard, scheme):
    reached, sent = call(guard, "/tokenize", authorization=scheme + b" " + KEY.encode())
    assert reached == ["/tokenize"] and sent[0]["status"] == 200


def test_the_first_authorization_header_decides(guard):
    scope = {
        "type": "http",
        "path": "/tokenize",
        "method": "POST",
        "headers": [
            (b"Authorization", b"Bearer wrong"),
            (b"authorization", b"Bearer " + KEY.encode()),
        ],
    }
    reached, sent = run_middleware(guard, scope)
    assert reached == [] and sent[0]["status"] == 401


def test_health_preflights_and_lifespan_pass_without_the_key(guard):
    assert call(guard, "/health", method="GET")[0] == ["/health"]
    preflight = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    assert call(guard, "/invocations", method="OPTIONS", headers=preflight)[0] == ["/invocations"]
    assert call(guard, kind="lifespan")[0] == ["/invocations"]


@pytest.mark.parametrize(
    "headers",
    [[], [(b"origin", b"https://app.example")], [(b"access-control-request-method", b"POST")]],
)
def test_an_options_request_that_is_not_a_preflight_needs_the_key(guard, headers):
    # vLLM's /metrics mount answers any method: OPTIONS /metrics returned the metrics.
    reached, sent = call(guard, "/metrics", method="OPTIONS", headers=headers)
    assert reached == [] and sent[0]["status"] == 401


def test_a_websocket_without_the_key_is_closed(guard):
    reached, sent = call(guard, "/v1/realtime", method=None, kind="websocket")
    assert reached == [] and sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize("key", [None, ""])
def test_without_a_key_the_app_refuses_to_start_vllm(project, tmp_path, monkeypatch, key):
    app = rendered_app(project)
    if key is None:
        monkeypatch.delenv("VLLM_API_KEY", raising=False)
    else:
        monkeypatch.setenv("VLLM_API_KEY", key)
    with pytest.raises(RuntimeError, match="VLLM_API_KEY is not set"):
        app.with_auth_guard(app.vllm_environment(), str(tmp_path))


@pytest.mark.parametrize(
    "digest",
    [
        None,
        "",
        "zz:" + "00" * 32,
        "00" * 8 + ":" + "00" * 32,
        "00" * 16 + ":" + "00" * 31,
        "00" * 16,
    ],
)
def test_without_a_digest_the_guard_refuses_to_be_looked_up(project, tmp_path, monkeypatch, digest):
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    app = rendered_app(project)
    app.with_auth_guard(app.vllm_environment(), str(tmp_path))
    if digest is None:
        monkeypatch.delenv(AUTH_DIGEST_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(AUTH_DIGEST_VARIABLE, digest)
    module = load_guard(tmp_path)  # a deployment without a key imports it for its other class
    with pytest.raises(RuntimeError, match=f"{AUTH_DIGEST_VARIABLE} is not set"):
        module.RequireApiKey  # what vLLM looks up at start for --middleware


def test_the_app_writes_the_template_file_and_puts_its_folder_first_on_the_import_path(
    project, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    app = rendered_app(project)
    environment = app.with_auth_guard(app.vllm_environment(), str(tmp_path))
    assert (tmp_path / "deployer_auth_guard.py").read_bytes() == (
        REPO / "templates" / "vllm_auth_guard.py"
    ).read_bytes()
    assert environment["PYTHONPATH"] == f"{tmp_path}:/elsewhere"
    monkeypatch.delenv("PYTHONPATH")
    assert app.with_auth_guard(app.vllm_environment(), str(tmp_path))["PYTHONPATH"] == str(tmp_path)


def test_vllm_gets_a_salted_digest_of_the_key_and_never_the_key(project, tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    app = rendered_app(project)
    first = app.with_auth_guard(app.vllm_environment(), str(tmp_path))
    second = app.with_auth_guard(app.vllm_environment(), str(tmp_path))
    assert "VLLM_API_KEY" not in first and not any(KEY in value for value in first.values())
    salt, digest = first[AUTH_DIGEST_VARIABLE].split(":")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert (
        first[AUTH_DIGEST_VARIABLE] != second[AUTH_DIGEST_VARIABLE]
    )  # a new salt each start: no table of digests helps
    assert (
        f'DIGEST_VARIABLE = "{AUTH_DIGEST_VARIABLE}"'
        in (REPO / "templates" / "vllm_auth_guard.py").read_text()
    )


CREDENTIALS = {
    "VLLM_API_KEY": KEY,
    "HF_TOKEN": "hf_sentinel",
    "HUGGING_FACE_HUB_TOKEN": "hf_sentinel_old",
    "AWS_SECRET_ACCESS_KEY": "aws-sentinel",
    "AWS_ACCESS_KEY_ID": "AKIA-sentinel",
    "MODAL_IDENTITY_TOKEN": "oidc-sentinel",
    "db_password": "pw-sentinel",
    "WANDB_API_KEY": "wandb-sentinel",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secrets/sa.json",
    "MODAL_OAUTH_JWT_KEY": "jwt-sentinel",  # one the modal package itself treats as a credential
    "OPENAI_KEY": "sk-sentinel",
    "SENTRY_DSN": "https://key@sentry.example/1",
    "MYSQL_PWD": "mysql-sentinel",
    "MY_APIKEY": "apikey-sentinel",
    "SSH_PASSPHRASE": "passphrase-sentinel",
    "GITHUB_PAT": "pat-sentinel",
    "NPM_AUTH": "npm-sentinel",
    "AUTHORIZATION": "Bearer sentinel",
    "SSH_AUTH_SOCK": "/tmp/agent-sentinel",  # not a secret, but the way to one
}
# Settings whose names merely contain a credential word: vLLM and the tokenizers library need them.
SETTINGS = {
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_MULTI_STREAM_GEMM_TOKEN_THRESHOLD": "256",
    "VLLM_USE_FASTOKENS": "1",
    "PWD": "/root",
}


def test_vllm_gets_no_credential_from_the_environment_but_the_ones_the_yaml_hands_it(
    project, monkeypatch
):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)
    plain = rendered_app(project).vllm_environment()
    assert not set(CREDENTIALS) & set(plain)
    assert {name: plain[name] for name in SETTINGS} == SETTINGS and plain["PATH"] == os.environ[
        "PATH"
    ]
    opted = rendered_app(
        project,
        MINIMAL.replace(
            'version: "0.11.2"',
            'version: "0.11.2"\n  env_from_secrets: [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY]',
        ),
    ).vllm_environment()
    assert {name for name in CREDENTIALS if name in opted} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }


def test_every_credential_handed_to_vllm_is_for_review_and_the_api_key_and_modals_are_refused(
    project, cli
):
    project.deployment(
        "a",
        MINIMAL.replace(
            'version: "0.11.2"',
            'version: "0.11.2"\n  env_from_secrets: [AWS_SECRET_ACCESS_KEY, '
            "MODAL_IDENTITY_TOKEN, OMP_NUM_THREADS]",
        ),
    )
    code, out, _ = cli("validate", "--strict")
    assert code == 1
    assert (
        "deployments/a.yaml:6:22: warning: vllm.env_from_secrets hands "
        "AWS_SECRET_ACCESS_KEY to vLLM's process" in out
    )
    assert (
        "deployments/a.yaml:6:45: error: vllm.env_from_secrets MODAL_IDENTITY_TOKEN "
        "would hand one of Modal's own variables to vLLM's process" in out
    )
    assert (
        "deployments/a.yaml:6:67: warning: vllm.env_from_secrets OMP_NUM_THREADS changes nothing"
        in out
    )


@pytest.mark.parametrize("name", ["TOKENIZERS_PARALLELISM", "VLLM_USE_FASTOKENS"])
def test_settings_named_like_credentials_are_not_refused_as_credentials(project, cli, name):
    project.deployment("a", MINIMAL + f"image:\n  env: {{{name}: '1'}}\n")
    _, out, _ = cli("validate")
    assert "looks like a credential" not in out


def test_handing_vllm_the_api_key_is_refused(project, cli):
    project.deployment(
        "a",
        MINIMAL.replace(
            'version: "0.11.2"', 'version: "0.11.2"\n  env_from_secrets: [HF_TOKEN, VLLM_API_KEY]'
        ),
    )
    code, out, _ = cli("validate")
    assert code == 1
    assert (
        "deployments/a.yaml:6:32: error: vllm.env_from_secrets VLLM_API_KEY would hand "
        "the API key to vLLM's process" in out
    )
    assert "remove VLLM_API_KEY from vllm.env_from_secrets" in out
    assert (
        out.count(": error:") == 1
    )  # HF_TOKEN may go to vLLM (a private tokenizer repo its flags name, say)


def test_the_guard_is_the_last_middleware_after_the_yamls_own(project):
    app = rendered_app(
        project,
        MINIMAL.replace(
            'version: "0.11.2"', 'version: "0.11.2"\n  args: {middleware: [mine.Audit]}'
        ),
    )
    assert app.VLLM_FLAGS[-4:] == [
        "--middleware",
        "mine.Audit",
        "--middleware",
        "deployer_auth_guard.RequireApiKey",
    ]


@pytest.mark.parametrize("auth", ["{proxy: true}", "none"])
def test_without_an_api_key_there_is_no_guard(project, auth):
    app = rendered_app(
        project, MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", f"auth: {auth}")
    )
    assert "--middleware" not in app.VLLM_FLAGS and not hasattr(app, "with_auth_guard")


def test_serving_locally_without_a_key_leaves_the_guard_out_and_says_so(
    project, monkeypatch, hub_cache
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})
    rendered_app(project)
    local = local_command(project.root / "build" / "a" / "app.py", sys.executable, 8001)
    assert (
        local.argv[-6:-4] == ["--middleware", "deployer_auth_guard.RequireApiKey"]
        and local.auth_guard is not None
    )
    keyed, note = without_auth_guard(local, {"VLLM_API_KEY": KEY})
    assert keyed == local and note is None
    keyless, note = without_auth_guard(local, {})
    assert (
        "--middleware" not in keyless.argv
        and keyless.auth_guard is None
        and keyless.environment == local.environment
    )
    assert keyless.argv == [
        token
        for token in local.argv
        if token not in ("--middleware", "deployer_auth_guard.RequireApiKey")
    ]
    assert "VLLM_API_KEY is not set here" in note


@pytest.mark.filterwarnings(
    "ignore:The .*serve function is executing locally"
)  # no volumes here: the cache is hub_cache's
@pytest.mark.parametrize("snapshot", [False, True])
def test_the_modal_functions_start_vllm_without_credentials(
    project, monkeypatch, hub_cache, tmp_path, stand_in_vllm, snapshot
):
    """`serve`, and the GPU snapshot's `Server` (its enter methods, then serve), run as on Modal,
    with the Secrets' variables in the environment; the stand-in vLLM on PATH records the command
    and environment vLLM would be started with (vLLM's GPU build cannot start here;
    test_local_vllm.py starts the CPU build through the same app functions)."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    snapshot_folder = hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})
    text = (
        MINIMAL.replace(
            "api_key: {secret: test-api-key}", "api_key: {secret: test-api-key}\n  proxy: true"
        )
        + "cold_start: {gpu_snapshot: true}\n"
        if snapshot
        else MINIMAL
    )
    app = rendered_app(project, text)
    stand_in_vllm.serve(app)
    if snapshot:
        app.Server().serve.local()
        assert stand_in_vllm.requests() == [
            "POST /v1/completions",
            "POST /sleep?level=1",
            "POST /wake_up",
            "POST /v1/completions",
        ]
    else:
        app.serve.local()
    ((started,),) = [stand_in_vllm.starts()]
    command, environment = ["python", *started["argv"]], started["env"]
    assert command[command.index("--model") + 1] == str(
        snapshot_folder
    )  # downloaded here, with the token
    assert not set(CREDENTIALS) & set(environment) and not any(
        KEY in value for value in environment.values()
    )
    assert environment.get("VLLM_SERVER_DEV_MODE") == ("1" if snapshot else None)
    assert (
        AUTH_DIGEST_VARIABLE in environment
        and (
            Path(environment["PYTHONPATH"].split(os.pathsep)[0]) / "deployer_auth_guard.py"
        ).is_file()
    )
