"""The smoke section must name models the deployment serves, with patterns that compile."""

from __future__ import annotations

import re
from typing import Iterable

from ..diagnostics import Diagnostic
from ..load import did_you_mean
from ..model import Deployment
from ..patterns import linear
from ._at import at


def check_smoke_expectations(deployment: Deployment) -> Iterable[Diagnostic]:
    model_ids = deployment.model_ids
    for model, pattern in deployment.smoke.expect:
        path = ("smoke", "expect", model)
        if model not in model_ids:
            hint = did_you_mean(model, model_ids) or f"this deployment serves: {', '.join(model_ids)}"
            yield at(deployment, path, f"smoke.expect names {model!r}, which this deployment does not serve", hint=hint, rule="smoke.unknown-model")
        try:
            re.compile(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            yield at(deployment, path, f"expected pattern for {model!r} is not a valid regular expression: {getattr(exc, 'msg', exc)}", hint="escape special characters such as ( ) [ ] . * + ? with a backslash", rule="smoke.bad-pattern", key=False)
            continue
        try:
            linear(pattern)
        except ValueError as exc:
            yield at(
                deployment,
                path,
                f"expected pattern for {model!r} uses what the linear-time matcher (RE2) does not support: {exc}",
                hint="smoke checks match with RE2 so no reply can make them hang: drop backreferences (\\1), lookaround ((?=, (?!, (?<=), possessive quantifiers and repetitions over {1000}; write \\z for the end of the text",
                rule="smoke.bad-pattern",
                key=False,
            )
