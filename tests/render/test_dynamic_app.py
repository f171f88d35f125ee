"""The rendered app of a dynamic deployment (`adapter_loading: dynamic`), kept as a golden file and
imported with the real `modal` package: its adapters volume, the CPU function that stages adapters
into it, and the serve function that mounts it. A static deployment's app has none of it."""

from __future__ import annotations

import ast
import os

import modal
import pytest

from ..conftest import FIXTURES, MINIMAL
from .test_modal_app import app_for

GOLDEN = FIXTURES / "golden" / "dynamic.app.py"
DYNAMIC = (
    MINIMAL
    + """\
adapters:
  - {name: chess-puzzle, repo: pilipolio/chess-puzzle-sft-qwen3-4b, revision: main}
adapter_loading: dynamic
secrets: [huggingface]
"""
)


@pytest.fixture
def dynamic(project):
    project.deployment("dyn", DYNAMIC)
    return app_for(project.deployments, "dyn", project.root / "build")


def test_the_dynamic_render_matches_the_golden_file(dynamic):
    _, rendered = dynamic
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(rendered.source, encoding="utf-8")
    assert rendered.source == GOLDEN.read_text(encoding="utf-8"), (
        "run UPDATE_GOLDEN=1 pytest to accept a deliberate change"
    )


def test_serve_and_stage_adapters_mount_the_deployments_adapters_volume(dynamic):
    module, _ = dynamic
    volumes = {path: v.name for path, v in module.serve.info().volumes.items()}
    assert volumes["/root/adapters"] == "dyn-adapters"
    staging = module.stage_adapters.info()
    assert {path: v.name for path, v in staging.volumes.items()} == {
        "/root/.cache/huggingface": "huggingface-cache",
        "/root/adapters": "dyn-adapters",
    }
    assert staging.gpus == []  # a CPU container: it only downloads and copies
    assert staging.secrets == [
        "modal.Secret.from_name('test-api-key')",
        "modal.Secret.from_name('huggingface')",
    ]  # a private adapter repo needs the Hub token, as download_weights does


def test_the_constants_the_deployer_and_the_runtime_share(dynamic):
    module, rendered = dynamic
    assert module.ADAPTER_FOLDER == "/root/adapters"
    assert module.BASE_MODEL_LINK == "/root/base-model"
    assert module.ADAPTER_RELOAD_SECONDS == 10
    assert module.VLLM_FLAGS[-4:] == [
        "--middleware",
        "deployer_auth_guard.RequireApiKey",
        "--middleware",
        "deployer_auth_guard.CloseAdapterRoutes",
    ]
    tree = ast.parse(rendered.source)
    serve = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "serve")
    calls = [ast.unparse(c.func) for c in ast.walk(serve) if isinstance(c, ast.Call)]
    assert "runtime.linked_model" in calls and "runtime.watch_staged_adapters" in calls


def test_an_auth_none_dynamic_app_ships_the_middleware_that_closes_the_adapter_routes(project):
    project.deployment(
        "open",
        DYNAMIC.replace("auth:\n  api_key: {secret: test-api-key}", "auth: none")
        + "accept: {auth.public: a test}\n",
    )
    module, rendered = app_for(project.deployments, "open", project.root / "build")
    assert module.VLLM_FLAGS[-2:] == ["--middleware", "deployer_auth_guard.CloseAdapterRoutes"]
    assert "RequireApiKey" not in rendered.source
    assert (
        'add_local_file(HERE / "deployer_auth_guard.py", "/root/deployer_auth_guard.py")'
        in rendered.source
    )
    assert not hasattr(module, "with_auth_guard")


def test_a_dynamic_gpu_snapshot_app_watches_after_waking(project):
    project.deployment(
        "snap",
        DYNAMIC.replace("auth:\n  api_key: {secret: test-api-key}", "auth: {proxy: true}")
        + "cold_start: {gpu_snapshot: true}\n",
    )
    module, rendered = app_for(project.deployments, "snap", project.root / "build")
    assert isinstance(module.stage_adapters, modal.Function)
    server = next(n for n in ast.parse(rendered.source).body if isinstance(n, ast.ClassDef))
    wake = next(n for n in server.body if isinstance(n, ast.FunctionDef) and n.name == "wake_up")
    assert "runtime.watch_staged_adapters" in ast.unparse(wake)


def test_a_static_app_has_no_adapters_volume(project):
    project.deployment("still", MINIMAL)
    module, rendered = app_for(project.deployments, "still", project.root / "build")
    assert not hasattr(module, "stage_adapters") and not hasattr(module, "adapters_vol")
    assert "/root/adapters" not in rendered.source and "CloseAdapterRoutes" not in rendered.source
