"""Read each LoRA adapter's `adapter_config.json`, so LoRA limits are derived rather than guessed.

Local adapters are read from their folder; Hub adapters from the local Hugging Face cache at their
pinned revision (the Hub itself is not contacted here). What could not be read is recorded with
the reason, and reported by the LoRA check, never silently skipped.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .model import Adapter, AdapterConfig, Deployment, UnknownConfig

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _config_file(adapter: Adapter) -> Path | str:
    """The config's path, or why there is none."""
    source = adapter.source
    if source.path is not None:
        path = source.path / CONFIG_FILE
        return path if path.is_file() else f"{CONFIG_FILE} is missing from {source.written_path}"
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source.repo, CONFIG_FILE, revision=source.revision)
    if isinstance(cached, str):
        return Path(cached)
    at = f" at revision {source.revision}" if source.revision else ""
    return f"{source.repo}{at} is not in the local Hugging Face cache, and the Hub is not contacted"


def read_config(adapter: Adapter) -> AdapterConfig | UnknownConfig:
    found = _config_file(adapter)
    if isinstance(found, str):
        return UnknownConfig(found)
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return UnknownConfig(f"cannot read {found}: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        return UnknownConfig(f"{found} has no integer `r` (LoRA rank)")
    pattern = data.get("rank_pattern") or {}
    ranks = [data["r"], *(v for v in pattern.values() if isinstance(v, int))] if isinstance(pattern, dict) else [data["r"]]
    targets = data.get("target_modules") or ()
    weights = next((found.parent / w for w in WEIGHT_FILES if (found.parent / w).is_file()), None)
    if weights is None and adapter.source.repo is not None:
        weights = next((w for w in map(lambda f: _cached_file(adapter, f), WEIGHT_FILES) if w), None)
    return AdapterConfig(
        rank=max(ranks),
        alpha=data.get("lora_alpha"),
        target_modules=tuple(targets) if isinstance(targets, list) else str(targets),
        base_model=data.get("base_model_name_or_path"),
        read_from=str(found),
        raw=data,
        weights=str(weights) if weights else None,
    )


def _cached_file(adapter: Adapter, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(adapter.source.repo, filename, revision=adapter.source.revision)
    return Path(found) if isinstance(found, str) else None


def with_adapter_configs(deployment: Deployment) -> Deployment:
    """The deployment with each adapter's config (or the reason it is unknown) attached."""
    adapters = tuple(replace(a, config=read_config(a)) for a in deployment.adapters)
    return replace(deployment, adapters=adapters)
