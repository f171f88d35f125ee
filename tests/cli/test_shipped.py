"""The shipped deployments pass `validate --strict --locked` once locked where the Hub answers (CI
runs lock.yml for that): every warning left is either true of them or accepted in their YAML.

Here the Hub is the stand-in (tests/fake_hub.py) holding the shipped repos: Qwen3-4B's published
config.json and an adapter config for each adapter repo. qwen3-4b-multi's sql adapter names a
placeholder repo (`example-org/...`), which a team replaces with its own."""

from __future__ import annotations

import shutil

import yaml

from ..conftest import REPO
from ..fake_hub import FakeHub
from .hub_stand_ins import BASE, QWEN3_4B, lora


def shipped_repos() -> set[str]:
    repos = set()
    for path in (REPO / "deployments").glob("[!_]*.yaml"):
        data = yaml.safe_load(path.read_text())
        repos |= {a["repo"] for a in data.get("adapters", []) if "repo" in a}
    return repos


def test_the_shipped_deployments_pass_strict_once_locked(project, resolver, cli, monkeypatch):
    shutil.rmtree(project.deployments)
    shutil.copytree(REPO / "deployments", project.deployments)
    with FakeHub() as hub:
        hub.serve_to(monkeypatch)
        hub.add(BASE, {"config.json": QWEN3_4B})
        for repo in shipped_repos():
            hub.add(repo, {"adapter_config.json": lora(16)})
        code, _, err = cli("lock")
        assert code == 0, err
        code, out, err = cli("validate", "--strict", "--locked")
    assert code == 0, out
    assert "warning (accepted): the endpoint is public" in out  # chess-puzzle, as shipped
    assert "0 errors, 0 warnings, 1 accepted" in err
