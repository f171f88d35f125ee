"""Names that must be unique: app names across files, model ids within a deployment; and the
names a dynamic deployment's adapters take as folders in its adapter folder."""

from __future__ import annotations

from typing import Iterable, Sequence

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic
from deployer.spec.model import Deployment
from deployer.vllm.argv import ADAPTER_FOLDER_FILES, STAGED_ADAPTER_NAME


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
    yield from _check_staged_names(deployment)
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


def _check_staged_names(deployment: Deployment) -> Iterable[Diagnostic]:
    """A dynamic deployment's resolver serves only plain names (no separator, no leading dot),
    and staging refuses the names of the adapter folder's own files: any other name would never
    answer."""
    if not deployment.loads_adapters_dynamically:
        return
    for i, adapter in enumerate(deployment.adapters):
        if adapter.name in ADAPTER_FOLDER_FILES:
            problem = "is reserved for a file the adapter folder holds"
        elif not STAGED_ADAPTER_NAME.fullmatch(adapter.name):
            problem = "cannot name a folder the resolver serves"
        else:
            continue
        yield at(
            deployment,
            ("adapters", i, "name"),
            f"adapter name {adapter.name!r} {problem} (adapter_loading: dynamic stages "
            "adapters into that folder)",
            hint="use 1-128 letters, digits, '.', '_' and '-', starting with a letter or digit, "
            f"and not {' or '.join(ADAPTER_FOLDER_FILES)}",
            rule="names.staged-adapter",
            key=False,
        )
