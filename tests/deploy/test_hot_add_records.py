"""What a hot-add rests on that others can write: `deployer-state.json` in the adapters volume and
the commit Modal records for a version (anyone with the workspace's token can write both), and the
checkout it is applied from. Undoing a hot-add renders a recorded commit and runs its
stage_adapters, so only commits the checkout has (HEAD or its ancestors) are rendered; a hot-add
from a checkout whose files its commit does not hold is a full deploy; and what the volume says is
shown on lines of its own.
"""

from __future__ import annotations

import json

import pytest

from deployer.deploy.commit_files import RefError
from deployer.deploy.desired import Project
from deployer.deploy.hot_add import STATE_FILE, parse_state
from deployer.deploy.plan import UPDATE, Action, Change, Plan, format_markdown, format_text
from deployer.deploy.state import no_hot_add_from, trusted_commit

from ..conftest import git, git_commit
from .test_hot_add import DYNAMIC, VOLUME, adapter, alpha, chat, deployed, manifest  # noqa: F401


def state_file(world) -> dict:
    return json.loads(world.fake.volume_files(VOLUME)[STATE_FILE])


def write_state(world, state: dict) -> None:
    world.fake.write_volume_file(VOLUME, STATE_FILE, json.dumps(state))


def unreviewed_commit(project) -> str:
    """A commit on a branch never merged here, declaring an adapter of its own."""
    head = git(project.root, "rev-parse", "HEAD")
    git(project.root, "checkout", "-q", "-b", "unreviewed")
    adapter(project, "planted")
    commit = alpha(project, "planted")
    git(project.root, "checkout", "-q", head)
    return commit


def quick_smoke(monkeypatch) -> None:
    import deployer.deploy.hot_add

    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_SMOKE_SECONDS", 0.3)
    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_RETRY_SECONDS", 0.1)


# -- recorded commits: only HEAD and its ancestors are rendered -----------------------------------


@pytest.mark.parametrize("forged", ["unreviewed", "unreviewed-commit"])
def test_a_hot_add_whose_undo_would_render_a_forged_commit_stages_nothing(
    deployed, project, cli, monkeypatch, forged
):
    quick_smoke(monkeypatch)
    branch_commit = unreviewed_commit(project)
    state = state_file(deployed)
    state["commit"] = branch_commit if forged == "unreviewed-commit" else forged
    state["desired_hash"] = "ab" * 32  # a hot-add onto v1: plan takes it as what serves
    write_state(deployed, state)
    before = deployed.fake.volume_files(VOLUME)
    deployed.fake.clear_calls()

    code, out, _ = cli("apply", "--yes")
    assert code == 1
    (row,) = [line for line in out.splitlines() if line.startswith("alpha ")]
    assert "FAILED" in row and "nothing staged" in row
    why = (
        "neither HEAD nor an ancestor of it"
        if forged == "unreviewed-commit"
        else "'unreviewed' is not a git commit id"
    )
    assert why in out and "deployer apply --replace alpha" in out
    assert deployed.fake.volume_files(VOLUME) == before
    assert not any(c["op"] == "run" for c in deployed.fake.state["calls"])


def test_rollback_refuses_to_render_a_commit_modal_recorded_off_this_branch(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0  # hot-add of other onto v1
    branch_commit = unreviewed_commit(project)
    with deployed.fake._state() as s:  # what `modal deploy` from that branch would record
        s["apps"]["alpha"]["versions"][-1]["commit"] = branch_commit[:7]
    deployed.fake.clear_calls()

    code, _, err = cli("rollback", "alpha")
    assert code == 1
    assert "cannot undo the hot-add on alpha v1" in err
    assert f"commit {branch_commit[:7]} is neither HEAD nor an ancestor of it" in err
    assert sorted(manifest(deployed)) == ["other", "sql"]
    assert not any(c["op"] == "run" for c in deployed.fake.state["calls"])


def test_a_recorded_commit_is_trusted_only_as_an_id_of_head_or_an_ancestor(project):
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "config", "user.email", "ci@example.com")
    git(project.root, "config", "user.name", "CI")
    project.write("a.txt", "1")
    first = git_commit(project.root, "first")
    project.write("a.txt", "2")
    head = git_commit(project.root, "second")
    git(project.root, "checkout", "-q", "-b", "side", first)
    project.write("a.txt", "3")
    side = git_commit(project.root, "side")
    git(project.root, "checkout", "-q", "-")

    assert trusted_commit(project.root, head) == head
    assert trusted_commit(project.root, first[:7]) == first
    assert trusted_commit(project.root, first[:7] + "*") == first  # as Modal records it
    for recorded, why in [
        ("", "no git commit is recorded"),
        ("HEAD", "is not a git commit id"),
        ("side", "is not a git commit id"),
        ("--output=/tmp/x", "is not a git commit id"),
        (first[:6], "is not a git commit id"),  # too short to name one commit
        ("0" * 40, "is not in this repository"),
        (side, "neither HEAD nor an ancestor of it"),
    ]:
        with pytest.raises(RefError, match=why):
            trusted_commit(project.root, recorded)


# -- a hot-add needs its commit to hold what it stages ---------------------------------------------


def test_an_addition_from_uncommitted_files_is_a_full_deploy(deployed, project, cli):
    adapter(project, "extra")
    listed = "".join(f"  - name: {n}\n    path: ../adapters/{n}\n" for n in ("sql", "extra"))
    project.deployment("alpha", DYNAMIC + "adapters:\n" + listed)  # not committed

    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out
    assert (
        "note: not a hot-add: uncommitted changes; a hot-add is undone by rendering its commit"
        in out
    )
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    assert [v.number for v in deployed.fake.history("alpha")] == [2, 1]  # a new version
    assert sorted(manifest(deployed)) == ["extra", "sql"] and chat(deployed, "extra") == 200


def test_a_hot_add_records_the_full_commit_it_was_applied_from(deployed, project, cli):
    head = git(project.root, "rev-parse", "HEAD")
    assert cli("apply", "--yes")[0] == 0
    assert parse_state(deployed.fake.volume_files(VOLUME)[STATE_FILE]).commit == head


def test_outside_a_git_checkout_nothing_is_a_hot_add(tmp_path):
    assert no_hot_add_from(tmp_path) == (
        "not a git checkout; a hot-add is undone by rendering its commit"
    )


# -- what the state file says reaches the plan on lines of its own --------------------------------


def test_a_state_file_with_names_staging_refuses_is_ignored(deployed, cli):
    assert cli("apply", "--yes")[0] == 0
    state = state_file(deployed)
    state["desired_hash"] = "ab" * 32
    state["adapters"].append({"name": "x\n::error title=forged::injected line", "source": "s"})
    write_state(deployed, state)
    code, out, _ = cli("plan")
    assert code == 0
    assert not any(line.startswith("::") for line in out.splitlines())
    assert (
        "deployer-state.json of volume alpha-adapters is ignored: adapter name "
        "'x\\n::error title=forged::injected line' is not one staging accepts"
    ) in out


def test_a_state_file_with_a_source_holding_control_characters_is_ignored():
    text = json.dumps(
        {
            "deployed_hash": "ab",
            "desired_hash": "cd",
            "adapters": [{"name": "sql", "source": "org/sql\n::warning::x"}],
        }
    )
    with pytest.raises(ValueError, match="the source of adapter sql holds control characters"):
        parse_state(text)


def test_every_change_line_of_a_plan_is_printed_on_one_line():
    forged = Change("adapter sql", "org/sql@1\n::error::injected", None)
    plan = Plan(
        (Action("alpha", UPDATE, "deployer-0-ab", changes=(forged,)),),
        Project("p", "12345678"),
        "Modal",
    )
    text = format_text(plan)
    assert not any(line.startswith("::") for line in text.splitlines())
    assert "adapter sql removed (was org/sql@1\\n::error::injected)" in text
    assert "\n::" not in format_markdown(plan)
