"""The smoke section must name models the deployment serves, with patterns that compile."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic
from deployer.core.patterns import PatternTooSlow, compile_error
from deployer.core.text import did_you_mean
from deployer.spec.model import Deployment


def check_smoke_expectations(deployment: Deployment) -> Iterable[Diagnostic]:
    model_ids = deployment.model_ids
    for model, pattern in deployment.smoke.expect:
        path = ("smoke", "expect", model)
        if model not in model_ids:
            hint = (
                did_you_mean(model, model_ids) or f"this deployment serves: {', '.join(model_ids)}"
            )
            yield at(
                deployment,
                path,
                f"smoke.expect names {model!r}, which this deployment does not serve",
                hint=hint,
                rule="smoke.unknown-model",
            )
        try:
            reason = compile_error(pattern)
        except PatternTooSlow as slow:
            reason = f"compiling it {slow}"
        if reason:
            yield at(
                deployment,
                path,
                f"expected pattern for {model!r} is not a valid regular expression: {reason}",
                hint="escape special characters such as ( ) [ ] . * + ? with a backslash",
                rule="smoke.bad-pattern",
                key=False,
            )
