"""Local `path:` sources must exist, stay inside the repository and hold only what apply may
upload (sources/folders.py decides; this places each finding at the `path:` that wrote it)."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic
from deployer.sources.folders import problems_of
from deployer.spec.model import Deployment


def check_local_sources(deployment: Deployment) -> Iterable[Diagnostic]:
    for declared in deployment.declared_sources:
        what = "base model" if declared.adapter is None else f"adapter {declared.adapter!r}"
        for rule, problem, hint in problems_of(deployment, declared):
            yield at(
                deployment, declared.yaml_path, f"{what} {problem}", hint=hint, rule=rule, key=False
            )
