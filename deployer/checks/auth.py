"""An endpoint is never public by accident, and its key stays out of vLLM's process."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import Deployment
from deployer.vllm.argv import CREDENTIAL_NAME


def check_auth(deployment: Deployment) -> Iterable[Diagnostic]:
    yield from _credentials_for_vllm(deployment)
    if not deployment.auth.is_public:
        return
    if deployment.document.data.get("auth") != "none":
        yield at(
            deployment,
            ("auth",),
            "auth enables neither an API key nor proxy auth, which would leave the endpoint public",
            hint="set `api_key: {secret: NAME}` or `proxy: true`, or write `auth: none` if a "
            "public endpoint is intended",
            rule="auth.nothing-enabled",
        )
        return
    yield at(
        deployment,
        ("auth",),
        "the endpoint is public: anyone with its URL can send requests and run up GPU cost",
        hint="protect it with `auth: {api_key: {secret: NAME}}` (OpenAI clients pass "
        "api_key=) or `auth: {proxy: true}`",
        rule="auth.public",
        severity=Severity.WARNING,
        key=False,
    )


def _credentials_for_vllm(deployment: Deployment) -> Iterable[Diagnostic]:
    """`vllm.env_from_secrets` undoes, name by name, what keeps credentials out of vLLM's process:
    each is for review (`validate --strict` stops), the API key and Modal's own never go."""
    for i, name in enumerate(deployment.vllm.env_from_secrets):
        where = ("vllm", "env_from_secrets", i)
        if name.upper() == "VLLM_API_KEY":
            yield at(
                deployment,
                where,
                f"vllm.env_from_secrets {name} would hand the API key to vLLM's process, "
                "where a file it is tricked into serving (/proc/self/environ) exposes it; "
                "the app's middleware checks the key from a digest",
                hint=f"remove {name} from vllm.env_from_secrets; auth.api_key already guards "
                "every route",
                rule="secrets.api-key-to-vllm",
                key=False,
            )
        elif name.upper().startswith("MODAL_"):
            yield at(
                deployment,
                where,
                f"vllm.env_from_secrets {name} would hand one of Modal's own variables to "
                "vLLM's process; vLLM reads none of them, and Modal's tokens open the "
                "workspace",
                hint=f"remove {name} from vllm.env_from_secrets",
                rule="secrets.modal-to-vllm",
                key=False,
            )
        elif not CREDENTIAL_NAME.search(name):
            yield at(
                deployment,
                where,
                f"vllm.env_from_secrets {name} changes nothing: only names that look like "
                f"credentials are held back from vLLM, and vLLM gets {name} anyway",
                hint=f"remove {name} from vllm.env_from_secrets",
                rule="secrets.to-vllm",
                severity=Severity.WARNING,
                key=False,
            )
        else:
            yield at(
                deployment,
                where,
                f"vllm.env_from_secrets hands {name} to vLLM's process, where a file vLLM "
                "is tricked into reading (a model config naming /proc/self/environ) would "
                "expose it",
                hint="review it: keep only what vLLM itself must read (AWS keys for an S3 "
                "load-format, HF_TOKEN for a private repo a flag names)",
                rule="secrets.to-vllm",
                severity=Severity.WARNING,
                key=False,
            )
