"""Reading configs from the Hub at pinned revisions, against tests/fake_hub.py (a stateful fake
of the Hub's file API on loopback: the real Hub cannot be reached from our machines)."""

from __future__ import annotations

import json
import socket

import huggingface_hub.constants
import pytest

from deployer.checks.pipeline import check_paths
from deployer.sources import hub

from ..conftest import FIXTURES
from ..fake_hub import FakeHub

QWEN3_4B = (FIXTURES / "configs" / "Qwen--Qwen3-4B-Instruct-2507.json").read_text()
DEPLOYMENT = """\
base_model: {repo: Qwen/Qwen3-4B-Instruct-2507}
adapters:
  - {name: chess, repo: org/chess-lora, revision: v2}
gpu: H100
vllm: {version: "0.11.2", args: {max-model-len: 32768}}
auth: {proxy: true}
"""


def lora(rank: int) -> str:
    return json.dumps(
        {
            "r": rank,
            "lora_alpha": rank,
            "target_modules": ["q_proj"],
            "base_model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507",
        }
    )


@pytest.fixture
def online(monkeypatch):
    with FakeHub() as fake:
        fake.serve_to(monkeypatch)
        fake.add("Qwen/Qwen3-4B-Instruct-2507", {"config.json": QWEN3_4B})
        yield fake


def findings(project):
    checked = check_paths([project.deployments])
    return {d.rule: d for d in (*checked.diagnostics, *checked.notes)}, checked


def test_configs_are_read_from_the_hub_at_the_pinned_revision(project, online):
    online.add("org/chess-lora", {"adapter_config.json": lora(8)}, revision="main")
    online.add("org/chess-lora", {"adapter_config.json": lora(64)}, revision="v2")
    project.deployment("d", DEPLOYMENT)
    found, checked = findings(project)
    assert found == {}
    (deployment,) = checked.deployments
    assert deployment.adapters[0].config.rank == 64  # v2's, not main's
    assert ("/org/chess-lora/resolve/v2/adapter_config.json", None) in online.requests
    assert ("/Qwen/Qwen3-4B-Instruct-2507/resolve/main/config.json", None) in online.requests


def test_a_repo_without_an_adapter_config_is_an_error(project, online):
    online.add("org/chess-lora", {"README.md": "not an adapter"}, revision="v2")
    project.deployment("d", DEPLOYMENT)
    error = findings(project)[0]["sources.unreadable"]
    assert (
        error.is_error
        and error.line == 3
        and "org/chess-lora at revision v2 has no adapter_config.json" in error.message
    )


def test_an_unknown_revision_is_an_error(project, online):
    online.add("org/chess-lora", {"adapter_config.json": lora(8)}, revision="main")
    project.deployment("d", DEPLOYMENT)
    assert "org/chess-lora has no revision v2" in findings(project)[0]["sources.unreadable"].message


def test_a_private_repo_needs_a_token_and_is_read_with_one(project, online, monkeypatch):
    online.add("org/chess-lora", {"adapter_config.json": lora(16)}, revision="v2", private=True)
    project.deployment("d", DEPLOYMENT)
    assert "set HF_TOKEN" in findings(project)[0]["sources.unreadable"].message
    monkeypatch.setenv("HF_TOKEN", online.token)
    found, checked = findings(project)
    assert found == {} and checked.deployments[0].adapters[0].config.rank == 16
    assert (
        "/org/chess-lora/resolve/v2/adapter_config.json",
        f"Bearer {online.token}",
    ) in online.requests


def test_a_gated_base_model_says_how_to_get_access(project, online):
    online.repos.pop("Qwen/Qwen3-4B-Instruct-2507")
    online.add("Qwen/Qwen3-4B-Instruct-2507", {"config.json": QWEN3_4B}, gated=True)
    online.add("org/chess-lora", {"adapter_config.json": lora(8)}, revision="v2")
    project.deployment("d", DEPLOYMENT)
    error = findings(project)[0]["sources.unreadable"]
    assert (
        error.path == ("base_model",)
        and "is gated: accept its terms on the Hub and set HF_TOKEN" in error.message
    )


def test_an_unreachable_hub_is_tried_once_per_run_and_reported_as_skipped(project, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
    project.deployment("d", DEPLOYMENT)
    project.deployment("e", DEPLOYMENT.replace("org/chess-lora", "org/other-lora"))
    tried, real_connect = [], socket.create_connection
    monkeypatch.setattr(
        socket,
        "create_connection",
        lambda address, *args, **kw: tried.append(address) or real_connect(address, *args, **kw),
    )
    checked = check_paths([project.deployments])
    assert tried == [("127.0.0.1", closed)]  # configs of two deployments to read: one attempt
    warnings = [d for d in checked.diagnostics if d.rule == "lora.unknown-rank"]
    assert len(warnings) == 2 and all("the Hub is unreachable" in w.message for w in warnings)
    assert [n.rule for n in checked.notes] == ["fit.skipped", "fit.skipped"]
    assert hub._unreachable is not None


def _many_adapters(project, count: int) -> None:
    adapters = "".join(
        f"  - {{name: a{i}, repo: org/lora-{i}, revision: main}}\n" for i in range(count)
    )
    project.deployment(
        "d", DEPLOYMENT.replace("  - {name: chess, repo: org/chess-lora, revision: v2}\n", adapters)
    )


def test_hub_requests_stop_when_the_runs_budget_is_spent(project, online, monkeypatch):
    # 5,000 adapters of distinct repos, each answered 404 after 50 ms, held validate 4.5 minutes.
    monkeypatch.setattr(hub, "HUB_RUN_SECONDS", 0.001)  # spent by the first request...
    online.latency = (
        0.01  # ...which takes longer (a loopback answer once came in under a millisecond)
    )
    _many_adapters(project, 20)
    checked = check_paths([project.deployments])
    asked = [path for path, _ in online.requests if "/lora-" in path]
    assert len(asked) == 1
    unknown = [d for d in checked.diagnostics if d.rule == "lora.unknown-rank"]
    assert len(unknown) == 19 and all(
        "this run has spent its 0 s of Hub requests" in d.message for d in unknown
    )


def test_a_rate_limiting_hub_is_not_asked_again_in_the_run(project, online):
    online.requests_allowed = 2
    _many_adapters(project, 20)
    checked = check_paths([project.deployments])
    assert len(online.requests) == 3  # the third was refused with 429; nothing after it
    assert "the Hub is rate-limiting this machine (429)" in " ".join(
        d.message for d in checked.diagnostics
    )


def test_configs_from_the_hub_count_against_the_commands_parse_budget(project, online, monkeypatch):
    # The Hub's files (up to 10 MB each) were parsed outside the budget that local configs keep.
    from deployer.core import budget

    online.add("org/chess-lora", {"adapter_config.json": lora(8)}, revision="v2")
    monkeypatch.setattr(budget, "MAX_RUN_PARSED", 100)
    project.deployment("d", DEPLOYMENT)
    error = findings(project)[0]["sources.unreadable"]
    assert (
        error.is_error
        and "more than 0 MB of memory together" in error.message
        and "not valid JSON" not in error.message
    )


def test_a_hub_that_drips_its_reply_is_cut_off_after_one_request_timeout(project, monkeypatch):
    # A Hub sending one byte every few seconds kept validate running for minutes: a timeout
    # bounded each read only.
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def drip():
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            until = time.monotonic() + 30
            while time.monotonic() < until:
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.setattr(hub, "HUB_REQUEST_SECONDS", 1.0)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", "/nonexistent/token")
    try:
        found = hub.read_text("org/chess-lora", "adapter_config.json", "v2")
    finally:
        listener.close()
    assert isinstance(found, hub.Missing) and not found.definite
    assert "the Hub is unreachable (no complete reply within 1 s)" in found.reason
