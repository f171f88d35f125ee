"""An endpoint is never public by accident."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import Diagnostic, Severity
from ..model import Deployment
from ._at import at


def check_auth(deployment: Deployment) -> Iterable[Diagnostic]:
    if not deployment.auth.is_public:
        return
    if deployment.document.data.get("auth") != "none":
        yield at(
            deployment,
            ("auth",),
            "auth enables neither an API key nor proxy auth, which would leave the endpoint public",
            hint="set `api_key: {secret: NAME}` or `proxy: true`, or write `auth: none` if a public endpoint is intended",
            rule="auth.nothing-enabled",
        )
        return
    yield at(
        deployment,
        ("auth",),
        "the endpoint is public: anyone with its URL can send requests and run up GPU cost",
        hint="protect it with `auth: {api_key: {secret: NAME}}` (OpenAI clients pass api_key=) or `auth: {proxy: true}`",
        rule="auth.public",
        severity=Severity.WARNING,
        key=False,
    )
