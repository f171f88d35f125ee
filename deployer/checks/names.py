"""Names that must be unique: app names across files, model ids within a deployment."""

from __future__ import annotations

from typing import Iterable, Sequence

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic
from deployer.spec.model import Deployment


def check_unique_app_names(deployments: Sequence[Deployment]) -> Iterable[Diagnostic]:
    first: dict[str, Deployment] = {}
    for deployment in deployments:
        other = first.setdefault(deployment.name, deployment)
        if other is deployment:
            continue
        yield at(
            deployment,
            ("name",) if "name" in deployment.document.data else (),
            f"app name {deployment.name!r} is already used by {other.file}; the second "
            "deploy would replace the first app",
            hint="give one of them a different `name:` (it defaults to the file name)",
            rule="names.duplicate-app",
        )


def check_adapter_names(deployment: Deployment) -> Iterable[Diagnostic]:
    seen: dict[str, int] = {}
    served = deployment.base_model.served_name
    for i, adapter in enumerate(deployment.adapters):
        if adapter.name in seen:
            yield at(
                deployment,
                ("adapters", i, "name"),
                f"adapter name {adapter.name!r} is already used by "
                f"adapters[{seen[adapter.name]}]; clients could reach only one of them",
                hint="give each adapter its own name",
                rule="names.duplicate-adapter",
                key=False,
            )
            continue
        seen[adapter.name] = i
        if adapter.name == served:
            yield at(
                deployment,
                ("adapters", i, "name"),
                f"adapter name {adapter.name!r} is also the base model's served name; "
                "requests for it would be ambiguous",
                hint="rename the adapter, or set base_model.served_name to something else",
                rule="names.adapter-shadows-base",
                key=False,
            )
