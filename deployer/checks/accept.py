"""Warnings a deployment accepts (`accept: {rule id: reason}`), and acceptances that do not hold.

An accepted warning stays in the report, marked with its reason, so a reviewer still sees it; it no
longer fails `validate --strict`. Only warnings can be accepted: an error means the deployment would
fail or must not be deployed as written, and a note never fails a run. An acceptance of a rule that
no longer fires is reported, so the file does not keep excusing what is gone.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.core.rules import RULES
from deployer.core.text import did_you_mean
from deployer.spec.model import Deployment

OWN_FAMILY = "accept."  # findings about acceptances are not themselves acceptable


def apply_acceptances(deployment: Deployment, findings: Iterable[Diagnostic]) -> list[Diagnostic]:
    """`deployment`'s own findings, its accepted warnings marked with their reason, followed by
    what is wrong with its `accept:` entries."""
    reasons = dict(deployment.accept)
    marked, fired = [], set()
    for finding in findings:
        fired.add(finding.rule)
        if finding.rule in reasons and finding.severity is Severity.WARNING:
            finding = dataclasses.replace(finding, accepted=reasons[finding.rule])
        marked.append(finding)
    return marked + [
        problem
        for rule in reasons
        if (problem := _entry_problem(deployment, rule, rule in fired)) is not None
    ]


def _entry_problem(deployment: Deployment, rule: str, fired: bool) -> Diagnostic | None:
    path = ("accept", rule)
    registered = RULES.get(rule)
    if registered is None:
        return at(
            deployment,
            path,
            f"accept: {rule!r} is not a rule id",
            hint=did_you_mean(rule, RULES) or "the rule ids are listed in docs/rules.md",
            rule="accept.unknown-rule",
        )
    if Severity.WARNING not in registered.severities or rule.startswith(OWN_FAMILY):
        kind = (
            "a note (a check that could not run), which never fails a run"
            if registered.severities == (Severity.NOTE,)
            else "an error"
        )
        return at(
            deployment,
            path,
            f"accept: {rule} cannot be accepted: it is {kind}; only warnings can be accepted",
            hint=f"remove the entry, and fix what {rule} reports (docs/rules.md says how)",
            rule="accept.not-a-warning",
        )
    if fired:
        return None
    span = deployment.document.keys.get(path) or deployment.document.where(path)
    whose = "" if span.file == deployment.file else f" for deployment {deployment.name!r}"
    return at(
        deployment,
        path,
        f"accept: {rule} accepts a warning that is not reported{whose}",
        hint="remove the entry: what it accepted is gone (or is no longer reported here)",
        rule="accept.unused",
        severity=Severity.WARNING,
    )


def settle(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """A finding two deployments share (at a line of their `_defaults.yaml`) that one accepts and
    the other does not: the unaccepted copy stands, and the accepted one is dropped."""
    standing = {d for d in diagnostics if not d.accepted}
    return [
        d
        for d in diagnostics
        if not (d.accepted and dataclasses.replace(d, accepted="") in standing)
    ]
