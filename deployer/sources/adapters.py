"""Read each LoRA adapter's `adapter_config.json`, so LoRA limits are derived rather than guessed.

Local adapters are read from their folder; Hub adapters at the commit the lock pins (else at the
revision the YAML names) from the local Hugging Face cache, else from the Hub unless offline
(`hub.py`). What could not be read is recorded with the reason, and reported by the LoRA check,
never silently skipped; so is a weights file on disk (weights are never downloaded here) that is
shorter or longer than its safetensors header says, which vLLM would fail to load.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Collection

from deployer.core.budget import once, read_json
from deployer.sources import hub
from deployer.sources.base_model import WrongSize, check_safetensors_size
from deployer.sources.lock import as_downloaded
from deployer.spec.model import Adapter, AdapterConfig, Deployment, Source, UnknownConfig

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _load(adapter: Adapter) -> tuple[dict, Path | None, str] | UnknownConfig:
    """(config, folder holding it if on disk, where it was read), or why it could not be read."""
    source = adapter.source
    if source.path is not None:
        path = source.path / CONFIG_FILE
        if not path.is_file():
            return UnknownConfig(f"{CONFIG_FILE} is missing from {source.written_path}")
        try:
            return read_json(path), path.parent, str(path)
        except (OSError, ValueError, RecursionError) as exc:
            return UnknownConfig(f"cannot read {path}: {type(exc).__name__}: {exc}", definite=True)
    data, found = hub.read_json(source.repo, CONFIG_FILE, source.revision)
    if isinstance(found, hub.Missing):
        return UnknownConfig(found.reason, definite=found.definite)
    folder = (
        Path(found.where).parent if not found.where.startswith(("http://", "https://")) else None
    )
    return data, folder, found.where


def read_config(adapter: Adapter) -> AdapterConfig | UnknownConfig:
    return once(
        ("adapter config", adapter.source), lambda: _read_config(adapter)
    )  # shared by every adapter on that source


def _read_config(adapter: Adapter) -> AdapterConfig | UnknownConfig:
    loaded = _load(adapter)
    if isinstance(loaded, UnknownConfig):
        return loaded
    data, folder, where = loaded
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        return UnknownConfig(f"{where} has no integer `r` (LoRA rank)", definite=True)
    pattern = data.get("rank_pattern") or {}
    ranks = (
        [
            data["r"],
            *(v for v in pattern.values() if isinstance(v, int) and not isinstance(v, bool)),
        ]
        if isinstance(pattern, dict)
        else [data["r"]]
    )
    targets = data.get("target_modules") or ()
    if isinstance(targets, list):
        targets = [str(t) for t in targets]
    weights = (
        next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None) if folder else None
    )
    if weights is None and adapter.source.repo is not None:
        weights = next(
            (
                w
                for w in (
                    hub.cached_path(adapter.source.repo, f, adapter.source.revision)
                    for f in WEIGHT_FILES
                )
                if w
            ),
            None,
        )
    if weights is not None and weights.name.endswith(".safetensors"):
        try:
            check_safetensors_size(weights)
        except WrongSize as exc:  # the adapter vLLM would fail to load after a cold start
            return UnknownConfig(str(exc), definite=True)
        except OSError:
            pass  # an unreadable file is the sources check's finding
    return AdapterConfig(
        rank=max(ranks),
        alpha=data.get("lora_alpha"),
        target_modules=tuple(targets) if isinstance(targets, list) else str(targets),
        base_model=data.get("base_model_name_or_path")
        if isinstance(data.get("base_model_name_or_path"), str)
        else None,
        read_from=where,
        raw=data,
        weights=str(weights) if weights else None,
    )


def with_adapter_configs(deployment: Deployment, unread: Collection[Source] = ()) -> Deployment:
    """The deployment with each adapter's config (or the reason it is unknown) attached, read at
    its locked commit when `deployment.lock` pins one; adapters from `unread` sources (refused by
    the sources check) are left unlooked-up."""

    def config(adapter: Adapter) -> AdapterConfig | UnknownConfig:
        source = as_downloaded(adapter.source, deployment.lock, adapter.name)
        return read_config(replace(adapter, source=source))

    adapters = tuple(
        a if a.source in unread else replace(a, config=config(a)) for a in deployment.adapters
    )
    return replace(deployment, adapters=adapters)
