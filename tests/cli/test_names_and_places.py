"""Deployments named by name, and every command run from any folder of the project."""

from __future__ import annotations

import sys

from ..conftest import MINIMAL, git


def test_validate_takes_a_deployment_name(project, cli):
    project.deployment("chess-puzzle")
    project.deployment("broken", MINIMAL.replace("gpu: A10G", "gpu: A10X"))
    code, out, err = cli("validate", "chess-puzzle")
    assert code == 0 and "1 file checked: 0 errors" in out + err


def test_a_mistyped_name_gets_a_did_you_mean_and_nothing_else_is_read(project, cli):
    project.deployment("chess-puzzle")
    project.deployment("broken", MINIMAL.replace("gpu: A10G", "gpu: A10X"))
    code, out, _ = cli("validate", "chess-puzle")
    assert code == 1
    assert "chess-puzle: error: no such file, folder or deployment" in out
    assert "hint: did you mean 'chess-puzzle'?" in out
    assert "broken" not in out


def test_a_path_that_exists_is_read_as_a_path_before_a_name(project, cli):
    project.deployment("a")
    project.write("a/one.yaml", MINIMAL.replace("gpu: A10G", "gpu: A10X"))
    code, out, _ = cli("validate", "a")
    assert code == 1 and "a/one.yaml:3:6: error: invalid gpu" in out


def test_validate_from_a_subfolder_finds_the_projects_deployments(project, cli, monkeypatch):
    git(project.root, "init", "-q")
    project.deployment("a", MINIMAL.replace("gpu: A10G", "gpu: A10X"))
    (project.root / "docs" / "notes").mkdir(parents=True)
    monkeypatch.chdir(project.root / "docs" / "notes")
    code, out, _ = cli("validate")
    assert code == 1 and f"{project.root}/deployments/a.yaml:3:6: error: invalid gpu" in out
    code, out, _ = cli("validate", "a")
    assert code == 1 and "invalid gpu" in out


def test_the_search_for_deployments_stops_at_the_repository_root(project, cli, monkeypatch):
    project.deployment("a")
    (project.root / "inner" / "sub").mkdir(parents=True)
    git(project.root / "inner", "init", "-q")
    monkeypatch.chdir(project.root / "inner" / "sub")
    code, out, _ = cli("validate")
    assert code == 1 and "deployments: error: no such file or folder" in out


def test_render_from_a_subfolder_writes_the_same_app_beside_deployments(project, cli, monkeypatch):
    git(project.root, "init", "-q")
    project.deployment("a")
    assert cli("render")[0] == 0
    from_root = (project.root / "build" / "a" / "app.py").read_text()
    (project.root / "src").mkdir()
    monkeypatch.chdir(project.root / "src")
    code, out, _ = cli("render", "a", "--check")
    assert code == 0 and "up to date" in out
    assert not (project.root / "src" / "build").exists()
    assert (project.root / "build" / "a" / "app.py").read_text() == from_root


def test_folders_given_on_the_command_line_are_taken_as_given(project, cli, monkeypatch):
    project.deployment("a")
    project.write("other/b.yaml", MINIMAL)
    code, out, _ = cli("render", "--deployments", "other", "--out", "elsewhere")
    assert code == 0 and "elsewhere/b/app.py" in out
    assert not (project.root / "build").exists()


def test_serve_runs_a_relative_python_from_where_the_command_ran(project, cli, hub_cache):
    hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})
    project.deployment("a")
    interpreter = project.write("tools/bin/python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    interpreter.chmod(0o755)
    code, _, err = cli(
        "serve", "a", "--local", "--python", "tools/bin/python", "--port", "8766",
        "--startup-timeout", "60",
    )  # fmt: skip
    assert code == 1
    assert "No such file or directory" not in err
    assert f"no vLLM found for {interpreter};" in err
    assert "No module named 'vllm'" in err  # it started, with the interpreter given
