"""`accept:`: warnings a deployment accepts by rule id, with a reason."""

from __future__ import annotations

import json

from deployer.checks.pipeline import check_paths

from ..conftest import MINIMAL

PUBLIC = MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}\n", "auth: none\n")


def by_rule(project) -> dict:
    checked = check_paths([project.deployments])
    return {d.rule: d for d in checked.diagnostics}


def test_an_accepted_warning_is_reported_as_accepted_with_its_reason(project):
    project.deployment("app", PUBLIC + "accept:\n  auth.public: internal evaluation only\n")
    found = by_rule(project)
    assert found["auth.public"].is_accepted
    assert found["auth.public"].accepted == "internal evaluation only"
    assert "accept.unused" not in found


def test_an_accepted_warning_does_not_fail_strict_and_is_marked_in_every_format(project, cli):
    project.deployment("app", PUBLIC + "accept:\n  auth.public: internal evaluation only\n")
    code, out, err = cli("validate", "--strict")
    assert code == 0
    assert "warning (accepted): the endpoint is public" in out
    assert "  accepted: internal evaluation only" in out
    assert "0 errors, 0 warnings, 1 accepted" in err
    code, out, _ = cli("validate", "--strict", "--format", "json")
    report = json.loads(out)
    (item,) = [d for d in report["diagnostics"] if d["rule"] == "auth.public"]
    assert code == 0 and item["accepted"] == "internal evaluation only"
    assert report["warnings"] == 0 and report["accepted"] == 1
    _, out, _ = cli("validate", "--format", "github")
    assert "::notice " in out and "(accepted)" in out and "accepted: internal evaluation" in out


def test_an_unaccepted_warning_still_fails_strict(project, cli):
    project.deployment("app", PUBLIC)
    code, _, _ = cli("validate", "--strict")
    assert code == 1


def test_accepting_a_rule_that_no_longer_fires_is_a_warning_at_the_entry(project, cli):
    project.deployment("app", MINIMAL + "accept:\n  auth.public: internal evaluation only\n")
    unused = by_rule(project)["accept.unused"]
    assert not unused.is_error and not unused.is_accepted
    assert (unused.line, unused.column, unused.path) == (9, 3, ("accept", "auth.public"))
    assert cli("validate", "--strict")[0] == 1


def test_an_error_cannot_be_accepted(project):
    project.deployment("app", MINIMAL + "accept:\n  flags.managed: we know\n")
    refused = by_rule(project)["accept.not-a-warning"]
    assert refused.is_error and refused.line == 9
    assert "flags.managed cannot be accepted: it is an error" in refused.message


def test_an_unknown_rule_id_is_refused_with_the_closest_id(project):
    project.deployment("app", PUBLIC + "accept:\n  auth.publik: typo\n")
    found = by_rule(project)
    assert found["accept.unknown-rule"].is_error
    assert found["accept.unknown-rule"].hint == "did you mean 'auth.public'?"
    assert not found["auth.public"].is_accepted


def test_an_acceptance_needs_a_reason(project):
    project.deployment("app", PUBLIC + "accept:\n  auth.public: ''\n")
    assert by_rule(project)["schema.minLength"].is_error


def test_a_shared_warning_one_deployment_accepts_still_stands_for_the_other(project):
    project.write("deployments/_defaults.yaml", "auth: none\n")
    bare = MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}\n", "")
    project.deployment("a", bare + "accept:\n  auth.public: internal evaluation only\n")
    project.deployment("b", bare)
    public = [d for d in check_paths([project.deployments]).diagnostics if d.rule == "auth.public"]
    assert len(public) == 1 and not public[0].is_accepted
