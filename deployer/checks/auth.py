"""An endpoint is never public by accident, and its key stays out of vLLM's process."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import Diagnostic, Severity
from ..model import Deployment
from ._at import at


def check_auth(deployment: Deployment) -> Iterable[Diagnostic]:
    for i, name in enumerate(deployment.vllm.env_from_secrets):
        if name == "VLLM_API_KEY":
            yield at(
                deployment,
                ("vllm", "env_from_secrets", i),
                "vllm.env_from_secrets VLLM_API_KEY would hand the API key to vLLM's process, where a file it is tricked into serving (/proc/self/environ) exposes it; the app's middleware checks the key from a digest",
                hint="remove VLLM_API_KEY from vllm.env_from_secrets; auth.api_key already guards every route",
                rule="secrets.api-key-to-vllm",
                key=False,
            )
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
