"""`plan` shows how many requests a container takes when that changes (against the fake Modal)."""

from __future__ import annotations

from ..conftest import FAST, git_commit


def test_plan_shows_a_change_of_requests_per_container(project, modal_world, cli):
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    assert cli("apply", "--yes")[0] == 0
    batched = FAST.replace('version: "0.11.2"', 'version: "0.11.2"\n  args:\n    max-num-seqs: 64')
    project.deployment("alpha", batched)
    code, out, _ = cli("plan")
    assert code == 0
    assert (
        "requests per container: up to 256, more containers above 192 → "
        "up to 64, more containers above 48"
    ) in out


def test_plan_is_quiet_about_requests_per_container_that_did_not_change(project, modal_world, cli):
    project.deployment("alpha", FAST)
    git_commit(project.root, "alpha")
    assert cli("apply", "--yes")[0] == 0
    project.deployment("alpha", FAST.replace("startup_timeout: 3", "startup_timeout: 4"))
    code, out, _ = cli("plan")
    assert code == 0 and "scaling startup_timeout: 3 → 4" in out
    assert "requests per container" not in out
