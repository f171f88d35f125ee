"""The pre-commit hook the repository offers (.pre-commit-hooks.yaml): what pre-commit reads."""

from __future__ import annotations

import re
import shlex
import tomllib

import yaml

from deployer.cli.main import build_parser

from ..conftest import MINIMAL, REPO


def hooks() -> dict[str, dict]:
    listed = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    return {hook["id"]: hook for hook in listed}


def test_the_validate_hook_has_what_pre_commit_requires():
    hook = hooks()["deployer-validate"]
    assert {"id", "name", "entry", "language"} <= hook.keys()
    assert hook["language"] == "python" and hook["pass_filenames"] is True


def test_the_hooks_entry_is_the_installed_command_and_one_of_its_commands():
    program, *arguments = shlex.split(hooks()["deployer-validate"]["entry"])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert program in scripts
    args = build_parser().parse_args([*arguments, "deployments/a.yaml"])
    assert args.command == "validate" and [str(p) for p in args.paths] == ["deployments/a.yaml"]


def test_the_hook_runs_on_deployment_files_only():
    files = re.compile(hooks()["deployer-validate"]["files"])
    assert files.search("deployments/chess-puzzle.yaml")
    assert files.search("deployments/team-a/sql.yml")
    assert not files.search("lock/sources.yaml")
    assert not files.search(".github/workflows/deploy.yaml")


def test_the_hook_fails_the_commit_on_an_error_in_a_file_it_is_given(project, cli):
    good = project.deployment("good")
    bad = project.deployment("bad", MINIMAL.replace("gpu: A10G", "gpu: A10X"))
    assert cli("validate", "deployments/good.yaml")[0] == 0
    code, out, _ = cli("validate", good.relative_to(project.root), bad.relative_to(project.root))
    assert code == 1 and "deployments/bad.yaml:3:6: error: invalid gpu" in out
