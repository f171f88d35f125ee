"""`serve --local` of a dynamic deployment, before and around vLLM: its adapter folder
(build/NAME/dynamic-adapters/) holds exactly the declared adapters at start, a planted link there is
refused, and `stage_new_adapters` adds adapters beside them. tests/local/test_dynamic_vllm.py serves
the same with real vLLM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths
from deployer.local.server import (
    LocalError,
    local_command,
    prepare_dynamic_adapters,
    stage_new_adapters,
)
from deployer.local.watch import FollowYaml
from deployer.render.app import render
from deployer.render.output import write

from ..tiny_model import build_base_model, build_lora_adapter

DEPLOYMENT = """\
base_model: {path: ../models/tiny, served_name: tiny}
adapters:
  - {name: alpha, path: ../adapters/alpha}
adapter_loading: dynamic
gpu: L4
vllm: {version: "0.11.2", args: {max-model-len: 512}}
auth: {proxy: true}
"""


@pytest.fixture
def app_path(project) -> Path:
    base = build_base_model(project.root / "models" / "tiny")
    for seed, name in enumerate(("alpha", "beta"), start=1):
        build_lora_adapter(project.root / "adapters" / name, str(base), rank=8, seed=seed)
    project.deployment("tiny", DEPLOYMENT)
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    app = render(checked.deployments[0], project.root / "build")
    write(app)
    return app.path


def test_the_adapter_folder_holds_the_declared_adapters_for_the_model_vllm_runs(app_path, tmp_path):
    folder = app_path.parent / "dynamic-adapters"
    (folder / "stale").mkdir(parents=True)  # left by an earlier run: never listed, so removed
    local = local_command(app_path, sys.executable, 8765)
    dynamic = prepare_dynamic_adapters(local, app_path.parent, 8765)
    assert dynamic.folder == folder and dynamic.model == local.argv[local.argv.index("--model") + 1]
    assert set(local.runtime.read_manifest(str(folder))) == {"alpha"}
    staged = folder / local.runtime.read_manifest(str(folder))["alpha"]["folder"]
    assert (staged / "adapter_config.json").read_text().count(dynamic.model) == 1
    environment = dynamic.environment_in(str(tmp_path))  # the server's own empty folder
    assert environment["DEPLOYER_ADAPTER_FOLDER"] == str(folder)
    assert dynamic.token and dynamic.token not in str(environment)


def test_stage_new_adapters_adds_beside_what_is_staged(app_path, project, monkeypatch, tmp_path):
    local = local_command(app_path, sys.executable, 8765)
    dynamic = prepare_dynamic_adapters(local, app_path.parent, 8765)
    dynamic.environment_in(str(tmp_path))  # as vLLM starts: the token is made
    beta = str(project.root / "adapters" / "beta")
    assert stage_new_adapters(dynamic, {"beta": (beta, "beta@1")}) == ["beta"]
    assert set(local.runtime.read_manifest(str(dynamic.folder))) == {"alpha", "beta"}
    assert stage_new_adapters(dynamic, {"beta": (beta, "beta@1")}) == []
    # A new copy of a staged adapter is staged, and vLLM told (with the token) to forget the old.
    unloaded = []
    monkeypatch.setattr(
        dynamic.runtime, "unload_adapter", lambda port, name, token: unloaded.append((name, token))
    )
    assert stage_new_adapters(dynamic, {"beta": (beta, "beta@2")}) == ["beta"]
    assert unloaded == [("beta", dynamic.token)]
    dynamic.token = None  # another process than the one that started vLLM
    with pytest.raises(LocalError, match="adapter beta is served already"):
        stage_new_adapters(dynamic, {"beta": (beta, "beta@3")})
    assert local.runtime.read_manifest(str(dynamic.folder))["beta"]["source"] == "beta@2"


def test_serve_refuses_a_planted_link_for_the_adapter_folder(app_path, cli, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (app_path.parent / "dynamic-adapters").symlink_to(elsewhere)
    code, _, err = cli("serve", "tiny", "--local", "--python", sys.executable, "--port", "8766")
    assert code == 1
    assert "dynamic-adapters must be a plain folder" in err
    assert list(elsewhere.iterdir()) == []


# ## Following the YAML (serve --local's loop), without vLLM


def following(app_path, project, tmp_path) -> tuple[FollowYaml, list[str]]:
    local = local_command(app_path, sys.executable, 8765)
    dynamic = prepare_dynamic_adapters(local, app_path.parent, 8765)
    dynamic.environment_in(str(tmp_path))  # as the server's start does: it holds the token
    (deployment,) = check_paths([project.deployments]).deployments
    said: list[str] = []
    follow = FollowYaml(
        deployment, dynamic, project.root / "build", None, "http://127.0.0.1:8765", 1, said.append
    )
    return follow, said


def with_beta() -> str:
    return DEPLOYMENT.replace(
        "adapters:\n", "adapters:\n  - {name: beta, path: ../adapters/beta}\n"
    )


def test_an_adapter_added_to_the_yaml_is_staged_and_said(app_path, project, tmp_path):
    follow, said = following(app_path, project, tmp_path)
    follow.poll()
    assert said == []  # nothing changed yet
    project.deployment("tiny", with_beta())
    follow.poll()
    folder = app_path.parent / "dynamic-adapters"
    assert set(follow.dynamic.runtime.read_manifest(str(folder))) == {"alpha", "beta"}
    assert said == [
        "serving adapters beta (new) with no restart: vLLM loads each on its first request"
    ]
    assert "beta" in app_path.read_text()  # rendered into the app, as the next start serves it


def test_a_stray_file_in_the_build_folder_is_said_and_the_server_keeps_serving(
    app_path, project, tmp_path
):
    follow, said = following(app_path, project, tmp_path)
    (app_path.parent / "app.py~").write_text("an editor's backup")
    project.deployment("tiny", with_beta())
    follow.poll()  # never raises: the loop around it runs vLLM
    (line,) = said
    assert line.startswith("could not follow deployments/tiny.yaml: ")
    assert line.endswith("; still serving as before")
    folder = app_path.parent / "dynamic-adapters"
    assert set(follow.dynamic.runtime.read_manifest(str(folder))) == {"alpha"}
