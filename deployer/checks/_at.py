"""Placing a check's finding at the YAML that caused it."""

from __future__ import annotations

from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import Deployment


def at(
    deployment: Deployment,
    path: tuple,
    message: str,
    hint: str = "",
    rule: str = "",
    severity: Severity = Severity.ERROR,
    key: bool = True,
) -> Diagnostic:
    """A diagnostic at `path`'s key (or its value with `key=False`), in whichever file wrote it."""
    doc = deployment.document
    span = (doc.keys.get(path) if key else doc.values.get(path)) or doc.where(path)
    return Diagnostic(
        span.file,
        span.line,
        span.column,
        message,
        severity=severity,
        path=path,
        hint=hint,
        rule=rule,
    )
