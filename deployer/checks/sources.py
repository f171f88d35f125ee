"""Local `path:` sources must exist when we render: they are copied into the app's container."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import Diagnostic
from ..model import Deployment, Source
from ._at import at


def _check(deployment: Deployment, source: Source, path: tuple, what: str) -> Iterable[Diagnostic]:
    if source.path is None:
        return
    if not source.path.exists():
        yield at(deployment, path, f"{what} folder {source.written_path!r} does not exist (looked at {source.path})", hint="paths are relative to the YAML file that writes them", rule="sources.missing", key=False)
    elif not source.path.is_dir():
        yield at(deployment, path, f"{what} path {source.written_path!r} is not a folder", hint="point at the folder holding the model's files (config.json, weights)", rule="sources.not-a-folder", key=False)


def check_local_sources(deployment: Deployment) -> Iterable[Diagnostic]:
    yield from _check(deployment, deployment.base_model.source, ("base_model", "path"), "base model")
    for i, adapter in enumerate(deployment.adapters):
        yield from _check(deployment, adapter.source, ("adapters", i, "path"), f"adapter {adapter.name!r}")
