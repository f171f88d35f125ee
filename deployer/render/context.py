"""`context()`: every decision the template lays out, made here as data.

What the container runs (vLLM's command line, from `deployer.vllm.argv`), where it keeps its
caches and the local folders it is given, the function's options with a comment for each, the
secrets and the API key middleware: the template only places these values, each as a Python
literal (`deployer.render.literals`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from deployer.core.limits import ADAPTER_RELOAD_SECONDS  # how often a container reloads the volume
from deployer.render.literals import comment, duration
from deployer.render.templates import templates_dir
from deployer.spec.model import Deployment
from deployer.vllm.argv import (
    AUTH_DIGEST_VARIABLE,
    AUTH_GUARD_MODULE,
    CREDENTIAL_NAME,
    LORA_RESOLVER_MODULE,
    VLLM_PORT,
    WEIGHT_FILE_KINDS,
    unfetched_files,
    vllm_flags,
    vllm_server,
    weight_files,
)
from deployer.vllm.concurrency import concurrency

# What the app imports in its container besides `modal` (its downloads, vLLM's environment), the
# middleware vLLM imports (API key, closed adapter routes) and the LoRA resolver plugin vLLM loads
# for dynamic adapters: written beside every app, unchanged; the image gets those the app uses.
# Always ours, also under a project's own template. Name beside the app → file in templates/.
RUNTIME_MODULE = "deployer_runtime"
AUTH_GUARD_FILE = "vllm_auth_guard.py"
LORA_RESOLVER_FILE = "deployer_lora_resolver.py"
RUNTIME_FILES = {
    f"{RUNTIME_MODULE}.py": "deployer_runtime.py",
    f"{AUTH_GUARD_MODULE}.py": AUTH_GUARD_FILE,
    f"{LORA_RESOLVER_MODULE}.py": LORA_RESOLVER_FILE,
}
CONTAINER_APP_FOLDER = "/root"  # where Modal puts the app file, and so where it imports from
HF_CACHE = "/root/.cache/huggingface"
VLLM_CACHE = "/root/.cache/vllm"
CONTAINER_SOURCES = "/root/sources"  # local `path:` folders are copied under here
# hf_xet (huggingface-hub's downloader) opens more connections and uses more memory with this:
# Modal's vLLM example sets it, for a cold start that downloads gigabytes of weights.
DOWNLOAD_ENV = {"HF_XET_HIGH_PERFORMANCE": "1"}
DURATION_OPTIONS = ("startup_timeout", "scaledown_window", "timeout")  # seconds, as durations
# The image's locked package set (lock/images/<key>.txt), written beside the app when it is locked.
REQUIREMENTS_FILE = "requirements.txt"
# A dynamic deployment's adapters volume is mounted here: one folder per staged adapter and their
# manifest (templates/deployer_runtime.py stages them; the resolver reads them).
ADAPTER_FOLDER = "/root/adapters"
ADAPTER_VOLUME_SUFFIX = "-adapters"  # the volume is "<app name>-adapters", one per deployment
# vLLM's `--model` in a dynamic deployment's container: a link to wherever the weights were
# downloaded, so a staged adapter's base_model_name_or_path (which vLLM's resolver compares with
# `--model`) is known to the CPU function that stages it without downloading the model.
BASE_MODEL_LINK = "/root/base-model"


def context(deployment: Deployment, app_dir: Path) -> dict[str, Any]:
    """Everything the template lays out, decided here."""
    local_folders: dict[str, str] = {}  # container path → local path relative to the app file

    def container_path(kind: str, name: str, source) -> str:
        remote = f"{CONTAINER_SOURCES}/{kind}/{name}"
        local_folders[remote] = _relative(source.path, app_dir)
        return remote

    base = deployment.base_model
    locked = deployment.lock
    if base.source.is_local:
        base_model = container_path("models", "base", base.source)
    else:
        base_model = base.source.repo

    adapters: dict[str, dict[str, Any]] = {}
    for adapter in deployment.adapters:
        if adapter.source.is_local:
            adapters[adapter.name] = {
                "folder": container_path("adapters", adapter.name, adapter.source)
            }
        else:
            adapters[adapter.name] = {
                "repo": adapter.source.repo,
                "revision": (locked and locked.adapter_commit(adapter.name))
                or adapter.source.revision,
            }

    scaling = deployment.scaling
    function_options: list[tuple[str, Any, str]] = [("gpu", deployment.gpu.modal_spec, "")]
    # Modal bounds a container's start (model download and load, the snapshot's warm-up) by
    # `startup_timeout`, falling back to `timeout`: set it, or a 5-minute request timeout caps it.
    # Durations are rendered as `5 * MINUTES`; one that is not whole minutes says its unit.
    function_options.append(
        (
            "startup_timeout",
            scaling.startup_timeout,
            "longest a container may take to start: download and load"
            + _in_seconds(scaling.startup_timeout),
        )
    )
    function_options.append(
        (
            "scaledown_window",
            scaling.scaledown_window,
            "idle time before a container stops" + _in_seconds(scaling.scaledown_window),
        )
    )
    if scaling.timeout is not None:
        function_options.append(
            (
                "timeout",
                scaling.timeout,
                "longest a request may take" + _in_seconds(scaling.timeout),
            )
        )
    for key, why in (
        ("min_containers", "kept warm even with no traffic"),
        ("max_containers", "upper bound on replicas, and so on cost"),
        ("buffer_containers", "idle replicas kept ready beyond demand"),
    ):
        value = getattr(scaling, key)
        if value is not None and not (key == "min_containers" and value == 0):
            function_options.append((key, value, why))

    secrets = ([deployment.auth.api_key_secret] if deployment.auth.api_key_secret else []) + [
        s for s in deployment.secrets if s != deployment.auth.api_key_secret
    ]
    model_ids = deployment.model_ids
    return {
        "name": deployment.name,
        "sources": [comment(_from_repository_root(s)) for s in deployment.sources],
        "title": comment(_title(deployment)),
        "model_ids": [comment(m) for m in model_ids],
        "image": {
            "base": deployment.image.base,
            "python": deployment.image.python,
            "packages": [f"vllm=={deployment.vllm.version}", *deployment.image.pip],
            # Every package pinned, with hashes: the lock's set, shipped beside the app.
            "requirements": REQUIREMENTS_FILE if locked_files(deployment) else None,
            "locked_comment": comment(
                f"{', '.join([f'vllm=={deployment.vllm.version}', *deployment.image.pip])} and "
                "every package they need, pinned with hashes by the lock"
            ),
            "env": dict(deployment.image.env),
            "download_env": DOWNLOAD_ENV,
        },
        "base_model": base_model,
        "served_name": base.served_name,
        "adapters": adapters,
        "local_folders": local_folders,
        "volumes": {HF_CACHE: "huggingface-cache", VLLM_CACHE: "vllm-cache"},
        "server": vllm_server(deployment.image.python),
        "flags": vllm_flags(deployment),
        "weight_files": weight_files(deployment),
        "weight_file_kinds": WEIGHT_FILE_KINDS,
        "not_fetched": unfetched_files(deployment),
        "port": VLLM_PORT,
        "function_options": function_options,
        "durations": [key for key, _, _ in function_options if key in DURATION_OPTIONS],
        "secrets": secrets,
        "api_key_secret": deployment.auth.api_key_secret,
        "credential_name": CREDENTIAL_NAME.pattern,
        "env_from_secrets": list(deployment.vllm.env_from_secrets),
        "auth_guard": {
            "file": f"{AUTH_GUARD_MODULE}.py",
            "container_path": f"{CONTAINER_APP_FOLDER}/{AUTH_GUARD_MODULE}.py",
            "lines": _auth_guard_lines(),  # for templates that write it out themselves
            "digest_variable": AUTH_DIGEST_VARIABLE,
        }
        if deployment.auth.api_key_secret
        else None,
        # vLLM batches what it holds: a container takes up to its batch capacity (vllm/concurrency)
        "concurrency": concurrency(deployment).decorator_arguments,
        "startup_timeout": scaling.startup_timeout,
        "startup_timeout_comment": _duration_comment(scaling.startup_timeout),
        "proxy_auth": deployment.auth.proxy,
        "base_revision": (locked and locked.base_commit) or base.source.revision,
        "base_revision_comment": comment(_revision_comment(deployment)),
        "gpu_snapshot": deployment.cold_start.gpu_snapshot,
        "served_models": model_ids,
        # Shipped to the container by every app; the API key middleware only with auth_guard.
        "runtime_files": {
            f"{RUNTIME_MODULE}.py": f"{CONTAINER_APP_FOLDER}/{RUNTIME_MODULE}.py",
        },
        "dynamic": _dynamic(deployment),
    }


def dynamic_adapters_volume(name: str) -> str:
    """The Modal Volume a dynamic deployment's adapters are staged into."""
    return f"{name}{ADAPTER_VOLUME_SUFFIX}"


def _dynamic(deployment: Deployment) -> dict[str, Any] | None:
    """What a deployment that loads adapters dynamically adds: its adapters volume, the files
    vLLM imports for it (the resolver; the middleware, which an API key deployment ships anyway),
    and the stable `--model` path."""
    if not deployment.loads_adapters_dynamically:
        return None
    shipped = [LORA_RESOLVER_MODULE] + (
        [] if deployment.auth.api_key_secret else [AUTH_GUARD_MODULE]
    )
    return {
        "volume": dynamic_adapters_volume(deployment.name),
        "folder": ADAPTER_FOLDER,
        "base_model_link": BASE_MODEL_LINK,
        "reload_seconds": ADAPTER_RELOAD_SECONDS,
        "image_files": {
            f"{module}.py": f"{CONTAINER_APP_FOLDER}/{module}.py" for module in shipped
        },
    }


def locked_files(deployment: Deployment) -> tuple[tuple[str, str], ...]:
    """(name beside the app, text) of the lock's files the app installs from."""
    locked = deployment.lock
    if locked is None or locked.requirements is None:
        return ()
    return ((REQUIREMENTS_FILE, locked.requirements),)


def _revision_comment(deployment: Deployment) -> str:
    source, locked = deployment.base_model.source, deployment.lock
    if locked is not None and locked.base_commit:
        return f"{source.revision or 'main'} when locked (lock/sources.yaml)"
    return "None: the repo's main branch" if source.revision is None else "as the YAML names it"


def _in_seconds(seconds: int) -> str:
    return "" if duration(seconds).endswith("MINUTES") else ", in seconds"


def _duration_comment(seconds: int) -> str:
    """A comment for a number of seconds, e.g. `5 minutes` (older templates write it out)."""
    if seconds % 3600 == 0:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        n, unit = seconds // 60, "minute"
    else:
        return ""
    return f"{n} {unit}{'s' * (n != 1)}"


@functools.cache
def runtime_files() -> tuple[tuple[str, str], ...]:
    """(name beside the app, text) of each runtime file, read from our templates/."""
    return tuple(
        (name, (templates_dir() / template).read_text(encoding="utf-8"))
        for name, template in RUNTIME_FILES.items()
    )


@functools.cache
def _auth_guard_lines() -> list[str]:
    """The API key middleware's source, a line per literal: the app writes it out for vLLM."""
    return (templates_dir() / AUTH_GUARD_FILE).read_text(encoding="utf-8").splitlines(keepends=True)


def _from_repository_root(shown: str) -> str:
    """A deployment file as the app's header names it: from the root of the git repository that
    holds it, so the app reads the same whichever folder of the repository render ran in (as
    shown in messages, relative to the working folder, outside a repository)."""
    absolute = Path(os.path.abspath(shown))
    root = next((folder for folder in absolute.parents if (folder / ".git").exists()), None)
    return absolute.relative_to(root).as_posix() if root else shown


def _title(deployment: Deployment) -> str:
    n = len(deployment.adapters)
    adapters = "no LoRA adapters" if n == 0 else f"{n} LoRA adapter{'s' * (n != 1)}"
    base = deployment.base_model.source.describe()
    return (
        f"{deployment.name}: {base} with {adapters}, served by vLLM "
        f"{deployment.vllm.version} on Modal ({deployment.gpu.modal_spec})"
    )


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()
