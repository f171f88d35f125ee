"""The lock's files (deployer/sources/lock.py) and resolving a revision to a commit on the Hub."""

from __future__ import annotations

import pytest

from deployer.checks.pipeline import check_paths
from deployer.sources import hub
from deployer.sources.lock import (
    Lock,
    LockUnreadable,
    folder_for,
    package_changes,
    read_lock,
    update,
    upstream_moves,
    write_lock,
)

from ..conftest import MINIMAL
from ..fake_hub import FakeHub

ADAPTERS = MINIMAL + "adapters:\n  - {name: chess, repo: org/chess-lora}\n"


@pytest.fixture
def online(monkeypatch):
    with FakeHub() as fake:
        fake.serve_to(monkeypatch)
        yield fake


def deployments(project, text: str = ADAPTERS):
    project.deployment("d", text)
    return check_paths([project.deployments]).deployments


def resolve(repo: str, revision: str):
    found = hub.resolve_revision(repo, revision)
    return (None, found.reason) if isinstance(found, hub.Missing) else (found, "")


def packages(inputs) -> str:
    return "".join(f"{r} \\\n    --hash=sha256:{'0' * 64}\n" for r in inputs.requirements)


def test_a_branch_and_a_tag_resolve_to_their_commits_through_the_hub_api(online):
    online.add("org/a", {"f": "1"})
    online.add("org/a", {"f": "1"}, revision="v1")
    assert hub.resolve_revision("org/a", None) == online.head("org/a")
    assert hub.resolve_revision("org/a", "v1") == online.head("org/a", "v1")
    assert [path for path, _ in online.requests] == [
        "/api/models/org/a/revision/main",
        "/api/models/org/a/revision/v1",
    ]


def test_a_full_commit_is_kept_without_a_request(online):
    assert hub.resolve_revision("org/a", "0123456789abcdef0123456789abcdef01234567") == (
        "0123456789abcdef0123456789abcdef01234567"
    )
    assert not online.requests


def test_a_missing_revision_says_so(online):
    online.add("org/a", {"f": "1"})
    found = hub.resolve_revision("org/a", "v9")
    assert isinstance(found, hub.Missing) and "has no revision v9" in found.reason


def test_the_token_goes_to_the_hub_for_a_private_repo(online, monkeypatch):
    online.add("org/private", {"f": "1"}, private=True)
    monkeypatch.setenv("HF_TOKEN", online.token)
    assert hub.resolve_revision("org/private", "main") == online.head("org/private")


def test_the_lock_round_trips_through_its_files(project, online):
    online.add("org/chess-lora", {"adapter_config.json": "{}"})
    found = update(None, deployments(project), resolve, packages)
    folder = folder_for(project.deployments)
    assert write_lock(folder, found.lock) == ["images/" + next(iter(found.lock.images)) + ".txt",
                                              "sources.yaml"]  # fmt: skip
    assert read_lock(folder) == found.lock
    assert write_lock(folder, found.lock) == []  # unchanged: nothing rewritten


def test_upstream_moves_lists_the_branches_that_moved_not_the_tags(project, online):
    online.add("org/chess-lora", {"adapter_config.json": "{}"})
    online.add("org/chess-lora", {"adapter_config.json": "{}"}, revision="v1")
    text = ADAPTERS + "  - {name: tagged, repo: org/chess-lora, revision: v1}\n"
    lock = update(None, deployments(project, text), resolve, packages).lock
    assert list(upstream_moves(lock, resolve)) == []
    new = online.push("org/chess-lora", {"weights": "retrained"})
    (move,) = upstream_moves(lock, resolve)
    assert (move.deployment, move.new) == ("d", new)
    assert move.what == "adapter 'chess' (org/chess-lora@main)"


def test_a_lock_that_is_not_a_lock_is_a_finding_not_a_crash(project):
    project.deployment("d")
    project.write("lock/sources.yaml", "deployments: [1, 2]\n")
    with pytest.raises(LockUnreadable, match="deployments: expected a mapping"):
        read_lock(folder_for(project.deployments))
    checked = check_paths([project.deployments])
    (finding,) = [d for d in checked.diagnostics if d.rule.startswith("lock.")]
    assert finding.rule == "lock.unreadable" and finding.file == "lock/sources.yaml"


def test_a_linked_lock_is_not_read(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "sources.yaml"
    elsewhere.write_text("deployments: {}\n")
    (project.root / "lock").mkdir()
    (project.root / "lock" / "sources.yaml").symlink_to(elsewhere)
    with pytest.raises(LockUnreadable, match="is a link"):
        read_lock(folder_for(project.deployments))


def test_package_changes_name_each_version_that_moved():
    before = "a==1.0 \\\nb==2.0 \\\nc==3.0 \\\n"
    after = "a==1.1 \\\nb==2.0 \\\nd==4.0 \\\n"
    assert package_changes(before, after) == ["a 1.0 → 1.1", "- c 3.0", "+ d 4.0"]


def test_entries_of_removed_deployments_leave_the_lock(project, online):
    online.add("org/chess-lora", {"adapter_config.json": "{}"})
    lock = update(None, deployments(project), resolve, packages).lock
    assert update(lock, [], resolve, packages).lock == Lock({}, {}, {})
