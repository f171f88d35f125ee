"""End to end with real vLLM: a dynamic deployment takes an adapter while it runs, without a restart.

`deployer serve --local` of a deployment with `adapter_loading: dynamic` and one adapter; a second
adapter staged into its adapter folder (build/tiny/dynamic-adapters/) with
`deployer.local.server.stage_new_adapters` answers on its first request, while vLLM's process is
the one that started; so does one that `deployer adapter add` writes into the YAML, which the
server follows. The routes that would load any folder are closed to every caller, and the
resolver serves no name outside the staged folder. One vLLM start serves every test here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from deployer.local.server import DynamicAdapters, stage_new_adapters

from ..conftest import NO_VLLM, VLLM_PYTHON
from ..tiny_model import build_base_model, build_lora_adapter
from .serving import installed_vllm_version, serving

API_KEY = "dynamic-e2e-key-7c41"
# The bound: a staged adapter answers within this many seconds, with no restart.
STAGED_ANSWERS_WITHIN = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny model with adapter alpha declared, served dynamically; beta built but not declared."""
    assert VLLM_PYTHON, NO_VLLM
    root = tmp_path_factory.mktemp("dynamic")
    base = build_base_model(root / "models" / "tiny")
    build_lora_adapter(root / "adapters" / "alpha", str(base), rank=8, seed=1)
    build_lora_adapter(root / "adapters" / "beta", "some/other-name", rank=8, seed=2)
    build_lora_adapter(root / "adapters" / "gamma", str(base), rank=8, seed=3)
    build_lora_adapter(root / "adapters" / "gamma-retrained", str(base), rank=8, seed=4)
    (root / "deployments").mkdir()
    (root / "deployments" / "tiny.yaml").write_text(
        f"""\
base_model: {{path: ../models/tiny, served_name: tiny}}
adapters:
  - {{name: alpha, path: ../adapters/alpha}}
adapter_loading: dynamic
gpu: L4
vllm:
  version: "{installed_vllm_version()}"
  args: {{dtype: bfloat16, max-model-len: 512}}
auth: {{api_key: {{secret: tiny-api-key}}}}
"""
    )
    env = {
        **os.environ,
        "VLLM_API_KEY": API_KEY,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with serving(root, env) as served:
        served["answers"] = {}
        yield served


def request(served, method: str, path: str, body: dict | None = None, key: str | None = API_KEY):
    """(status, answer text) of a request to the served vLLM."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    url = f"http://127.0.0.1:{served['port']}{path}"
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data, headers, method=method), timeout=60
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def complete(served, model: str) -> tuple[int, str]:
    """(status, greedy completion) for `model`."""
    status, text = request(
        served,
        "POST",
        "/v1/completions",
        {"model": model, "prompt": "Hello", "max_tokens": 12, "temperature": 0},
    )
    return status, json.loads(text)["choices"][0]["text"] if status == 200 else text


def listed(served) -> list[str]:
    status, text = request(served, "GET", "/v1/models")
    assert status == 200, text
    return [model["id"] for model in json.loads(text)["data"]]


def start_time(served) -> float:
    status, text = request(served, "GET", "/metrics")
    assert status == 200
    line = next(line for line in text.splitlines() if line.startswith("process_start_time_seconds"))
    return float(line.split()[-1])


def test_vllm_starts_with_the_declared_adapter_room_for_more_and_the_routes_closed(served):
    started = next(line for line in served["stderr"] if line.startswith("starting vLLM:"))
    argv = started.split()
    assert argv[argv.index("--max-loras") + 1] == "8"  # not the count: room for staged adapters
    middleware = [argv[i + 1] for i, token in enumerate(argv) if token == "--middleware"]
    # The routes guard outermost (last): it answers before the API key is asked for.
    assert middleware == [
        "deployer_auth_guard.RequireApiKey",
        "deployer_auth_guard.CloseAdapterRoutes",
    ]
    assert listed(served) == ["tiny", "alpha"]
    for model in ("tiny", "alpha"):
        status, served["answers"][model] = complete(served, model)
        assert status == 200
    assert served["answers"]["tiny"] != served["answers"]["alpha"]


def test_a_staged_adapter_answers_without_a_restart(served):
    before = start_time(served)
    app_folder = served["root"] / "build" / "tiny"
    running = DynamicAdapters.of_running(app_folder)
    beta = served["root"] / "adapters" / "beta"
    label = running.runtime.adapter_label({"folder": str(beta)}, str(beta))
    assert stage_new_adapters(running, {"beta": (str(beta), label)}) == ["beta"]
    deadline = time.monotonic() + STAGED_ANSWERS_WITHIN
    status, answer = complete(served, "beta")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        status, answer = complete(served, "beta")
    assert status == 200, answer
    assert answer not in (served["answers"]["tiny"], served["answers"]["alpha"])
    assert start_time(served) == before  # the same vLLM process
    assert complete(served, "alpha") == (200, served["answers"]["alpha"])
    assert complete(served, "tiny") == (200, served["answers"]["tiny"])
    assert listed(served) == ["tiny", "alpha", "beta"]  # listed once loaded
    # Staging it again, alike, changes nothing.
    assert stage_new_adapters(running, {"beta": (str(beta), label)}) == []


@pytest.mark.parametrize("key", [API_KEY, None], ids=["with-key", "without-key"])
def test_the_routes_that_load_or_unload_any_folder_are_refused_to_everyone(served, key):
    beta = str(served["root"] / "adapters" / "beta")
    load = {"lora_name": "intruder", "lora_path": beta}
    for method, path, body in [
        ("POST", "/v1/load_lora_adapter", load),
        ("POST", "/V1/Load_Lora_Adapter/", load),
        ("POST", "/v1/unload_lora_adapter", {"lora_name": "alpha"}),
        ("POST", "/adapters", {"name": "intruder", "src": beta}),
        ("DELETE", "/adapters/alpha", None),
    ]:
        status, _ = request(served, method, path, body, key)
        assert status == 403, (method, path)
    assert "intruder" not in listed(served)
    assert complete(served, "alpha") == (200, served["answers"]["alpha"])


def test_names_outside_the_staged_folder_load_nothing(served):
    app_folder = served["root"] / "build" / "tiny"
    manifest = json.loads((app_folder / "dynamic-adapters" / "deployer-adapters.json").read_text())
    staged = app_folder / "dynamic-adapters" / manifest["adapters"]["alpha"]["folder"]
    # A valid copy of alpha beside the adapter folder, and one inside it that was never staged.
    sibling, unlisted = app_folder / "alpha", app_folder / "dynamic-adapters" / "delta"
    shutil.copytree(staged, sibling)
    shutil.copytree(staged, unlisted)
    try:
        for name in (
            "../alpha",
            "a/b",
            "dynamic-adapters/../alpha",
            "/alpha",
            "delta",
            "..",
            staged.name,  # alpha's version folder, asked for by its folder name
        ):
            status, answer = complete(served, name)
            assert status in (400, 404), (name, answer)
        models = listed(served)
    finally:
        shutil.rmtree(sibling)
        shutil.rmtree(unlisted)
    assert not {"../alpha", "a/b", "delta"} & set(models)


def deployer(served, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=served["root"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def said(served, text: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while not any(text in line for line in served["stderr"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_an_adapter_added_to_the_yaml_answers_within_seconds_without_a_restart(served):
    before = start_time(served)
    added = deployer(served, "adapter", "add", "tiny", "gamma", "--path", "adapters/gamma")
    assert added.returncode == 0, added.stderr
    started = time.monotonic()
    status, answer = complete(served, "gamma")
    while status != 200 and time.monotonic() - started < STAGED_ANSWERS_WITHIN:
        time.sleep(0.5)
        status, answer = complete(served, "gamma")
    assert status == 200, (answer, served["stderr"][-5:])
    assert answer not in (served["answers"]["tiny"], served["answers"]["alpha"])
    assert said(served, "serving adapters gamma (new) with no restart", within=5)
    assert start_time(served) == before
    assert complete(served, "alpha") == (200, served["answers"]["alpha"])
    assert complete(served, "tiny") == (200, served["answers"]["tiny"])
    state = json.loads((served["root"] / "build" / "tiny" / "local-server.json").read_text())
    assert "gamma" in state["models"]  # `deployer smoke tiny` now checks it too


# Long enough to fill whole blocks of vLLM's prefix cache, so a second request reuses them.
SHARED_PREFIX = "".join(
    f"line {i}: the quick brown fox jumps over the lazy dog. " for i in range(8)
)


def complete_long(served, model: str) -> str:
    status, text = request(
        served,
        "POST",
        "/v1/completions",
        {"model": model, "prompt": SHARED_PREFIX, "max_tokens": 12, "temperature": 0},
    )
    assert status == 200, text
    return json.loads(text)["choices"][0]["text"]


def test_an_updated_adapter_answers_with_its_new_weights_not_the_old_ones_cache(served):
    """vLLM keys its prefix cache by an adapter's name and folder: each version is staged into a
    folder of its own, so the new weights never reuse what the old ones computed."""
    old = complete_long(served, "gamma")  # fills the prefix cache for gamma's first version
    added = deployer(
        served, "adapter", "add", "tiny", "fresh", "--path", "adapters/gamma-retrained"
    )
    assert added.returncode == 0, added.stderr
    assert said(served, "serving adapters fresh (new)", within=10)
    expected = complete_long(served, "fresh")  # the retrained weights, never cached as gamma's
    assert expected != old
    yaml = served["root"] / "deployments" / "tiny.yaml"
    yaml.write_text(yaml.read_text().replace("adapters/gamma}", "adapters/gamma-retrained}"))
    assert said(served, "serving adapters gamma (updated)", within=10)
    assert complete_long(served, "gamma") == expected


def test_an_edit_that_needs_a_restart_or_does_not_validate_is_said_and_changes_nothing(served):
    yaml = served["root"] / "deployments" / "tiny.yaml"
    original = yaml.read_text()
    before = start_time(served)
    try:
        yaml.write_text(original.replace("max-model-len: 512", "max-model-len: 256"))
        assert said(served, "vllm changed: vLLM reads it at start; stop this server", within=10)
        yaml.write_text(original.replace("adapter_loading: dynamic", "adapter_loading: lazy"))
        assert said(served, "changed and does not validate; still serving it as before", 10)
    finally:
        yaml.write_text(original)
    assert start_time(served) == before
    assert complete(served, "gamma")[0] == 200
