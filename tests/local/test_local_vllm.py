"""End to end with real vLLM: a rendered deployment with three adapters serves and passes smoke.

`deployer serve --local` runs the rendered app's own vLLM command, with vLLM's CPU build from the
interpreter in $DEPLOYER_VLLM_PYTHON (`.ci/run` installs it in .venv-vllm). The model and the
adapters are built offline by tests/tiny_model.py; nothing is fetched from the Hub.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..conftest import NO_VLLM, VLLM_PYTHON, import_app
from ..tiny_model import build_base_model, build_lora_adapter
from .serving import installed_vllm_version, serving

API_KEY = "e2e-sentinel-key-5f1c"  # the app reads it from VLLM_API_KEY, as from the Modal Secret
# Credentials a Secret could add beside it: the app must keep all three out of vLLM's processes.
OTHER_CREDENTIALS = {
    "HF_TOKEN": "hf_e2e_sentinel_61d0",
    "AWS_SECRET_ACCESS_KEY": "aws-e2e-sentinel-93b4",
}
RANKS = {"alpha": 8, "beta": 16, "gamma": 32}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A project with the tiny model and three adapters, served by `deployer serve --local`."""
    assert VLLM_PYTHON, NO_VLLM
    root = tmp_path_factory.mktemp("e2e")
    base = build_base_model(root / "models" / "tiny")
    for seed, (name, rank) in enumerate(RANKS.items(), start=1):
        build_lora_adapter(root / "adapters" / name, str(base), rank, seed)
    (root / "deployments").mkdir()
    (root / "deployments" / "tiny.yaml").write_text(
        f"""\
base_model: {{path: ../models/tiny, served_name: tiny}}
adapters:
  - {{name: alpha, path: ../adapters/alpha}}
  - {{name: beta, path: ../adapters/beta}}
  - {{name: gamma, path: ../adapters/gamma}}
gpu: L4
vllm:
  version: "{installed_vllm_version()}"
  args: {{dtype: bfloat16, max-model-len: 512}}
auth: {{api_key: {{secret: tiny-api-key}}}}
smoke:
  prompt: "Hello"
  max_tokens: 12
"""
    )
    env = {
        **os.environ,
        **OTHER_CREDENTIALS,
        "VLLM_API_KEY": API_KEY,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with serving(root, env) as served:
        yield served


def smoke(served, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployer", "smoke", "tiny", "--format", "json", *args],
        cwd=served["root"],
        env=served["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ready_line_names_the_openai_base_url_and_every_model(served):
    assert f"vLLM is ready at http://127.0.0.1:{served['port']}/v1" in "".join(served["stdout"])
    assert "models: tiny, alpha, beta, gamma" in "".join(served["stdout"])


def test_the_derived_max_lora_rank_admits_the_largest_adapter(served):
    started = next(line for line in served["stderr"] if line.startswith("starting vLLM:"))
    argv = started.split()
    assert argv[argv.index("--max-lora-rank") + 1] == str(max(RANKS.values()))
    assert argv[argv.index("--max-loras") + 1] == "3"
    assert argv.count("--lora-modules") == 1


def test_smoke_passes_and_every_adapter_really_changes_the_output(served):
    result = smoke(served)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values())
    assert set(checks) == {
        "health",
        "models",
        "chat tiny",
        "chat alpha",
        "chat beta",
        "chat gamma",
        "undeclared model refused",
        "credentials required",
    }
    outputs = {name: checks[f"chat {name}"]["output"] for name in ("tiny", *RANKS)}
    # Temperature 0: identical outputs would mean an adapter was not applied.
    assert len(set(outputs.values())) == 4, outputs
    assert API_KEY not in result.stdout + result.stderr


def test_the_api_key_is_required_and_undeclared_adapters_fail_cleanly(served):
    url = f"http://127.0.0.1:{served['port']}/v1/chat/completions"

    def post(model: str, key: str | None) -> int:
        headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {key}"} if key else {}),
        }
        body = json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
        ).encode()
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, body, headers), timeout=60
            ) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post("alpha", None) == 401
    assert post("alpha", API_KEY) == 200
    assert post("delta", API_KEY) == 404


def test_every_route_but_health_needs_the_key(served):
    """The app's middleware (templates/vllm_auth_guard.py) asks for the key on every route; vLLM's
    own check is off, as its process has no VLLM_API_KEY."""
    base = f"http://127.0.0.1:{served['port']}"

    def status(
        method: str, path: str, key: str | None, body: dict | None = None, extra: dict | None = None
    ) -> int:
        headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {key}"} if key else {}),
            **(extra or {}),
        }
        data = json.dumps(body).encode() if body is not None else None
        try:
            with urllib.request.urlopen(
                urllib.request.Request(base + path, data, headers, method=method), timeout=60
            ) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    tokenize = {"model": "tiny", "prompt": "hi"}
    generate = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert status("POST", "/tokenize", None, tokenize) == 401
    assert status("POST", "/tokenize", API_KEY, tokenize) == 200
    assert status("POST", "/invocations", None, generate) == 401
    assert status("GET", "/metrics", None) == 401
    assert status("GET", "/metrics", API_KEY) == 200
    assert status("GET", "/version", None) == 401
    assert status("OPTIONS", "/metrics", None) == 401  # the /metrics mount answers every method
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    # A CORS preflight passes the guard; vLLM's CORS middleware answers it (400: vLLM 0.32 allows no origin by default).
    assert status("OPTIONS", "/v1/chat/completions", None, extra=preflight) == 400
    assert status("GET", "/health", None) == 200


def test_no_vllm_process_holds_a_credential(served):
    """A file vLLM is tricked into reading (a tokenizer's `vocab: /proc/self/environ`, served back
    by /detokenize) finds no credential: not in any of its processes' environment or command line."""
    leader = json.loads((served["root"] / "build" / "tiny" / "local-server.json").read_text())[
        "pid"
    ]
    group = [pid for pid in _pids() if _process_group(pid) == leader]
    assert leader in group and len(group) >= 2, (
        group
    )  # the API server and its engine process at least
    sentinels = [API_KEY.encode(), *(value.encode() for value in OTHER_CREDENTIALS.values())]
    for pid in group:
        for view in ("environ", "cmdline"):
            seen = Path(f"/proc/{pid}/{view}").read_bytes()
            assert not [s for s in sentinels if s in seen], f"process {pid} {view}"
    environment = dict(
        line.split(b"=", 1)
        for line in Path(f"/proc/{leader}/environ").read_bytes().split(b"\0")
        if b"=" in line
    )
    assert b"VLLM_API_KEY" not in environment and b"HF_TOKEN" not in environment
    assert b"DEPLOYER_AUTH_DIGEST" in environment  # what the middleware checks keys against
    # ...while the deployer that started it still has them, so the sweep above could have found them.
    assert API_KEY.encode() in Path(f"/proc/{served['process'].pid}/environ").read_bytes()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2 :].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def test_a_failing_expectation_fails_smoke(served):
    deployment = served["root"] / "deployments" / "tiny.yaml"
    original = deployment.read_text()
    deployment.write_text(original + "  expect: {beta: '^this will never be generated$'}\n")
    try:
        result = smoke(served, "--url", f"http://127.0.0.1:{served['port']}")
    finally:
        deployment.write_text(original)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert result.returncode == 1
    assert not checks["chat beta"]["ok"] and "does not match" in checks["chat beta"]["detail"]
    assert checks["chat alpha"]["ok"]


def test_the_snapshot_check_tells_every_adapter_from_the_base_on_real_vllm(served, monkeypatch):
    """What a GPU snapshot records before sleep and asks again after wake-up (the runtime's
    `answers`, with the app's API key): real vLLM takes the request, each adapter answers other
    than the base, and the same answers again pass the check. (Sleep itself needs a GPU.)"""
    monkeypatch.setenv("VLLM_API_KEY", API_KEY)
    runtime = import_app(served["root"] / "build" / "tiny" / "app.py").runtime
    before = runtime.answers(served["port"], ["tiny", *RANKS])
    assert len(set(before.values())) == 4, before
    runtime.check_answers(served["port"], before)
    with pytest.raises(RuntimeError, match="'beta' answered 'earlier' before sleep and '"):
        runtime.check_answers(served["port"], {**before, "beta": "earlier"})


def test_ctrl_c_stops_vllm_and_its_engine_processes(served):
    process = served["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served["port"]), timeout=2).close()
    assert not (served["root"] / "build" / "tiny" / "local-server.json").exists()
