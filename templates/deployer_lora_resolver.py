"""Serve adapters staged into the deployment's adapter folder, on their first request.

vLLM, with VLLM_ALLOW_RUNTIME_LORA_UPDATING, asks each registered LoRA resolver about a requested
model name it does not serve yet. vLLM's own filesystem resolver joins the name onto its folder as
it is, so `../x` reaches outside it. This one serves a name only if it is a plain folder name,
the folder's manifest (written by the deployer's staging, last) lists it, the version folder the
manifest names for it lies inside the adapter folder, and its adapter_config.json names vLLM's
base model (`--model`), as staging writes it. Anything else: None, and vLLM answers that the model does not exist.

vLLM loads it as a plugin (VLLM_PLUGINS=deployer_lora_resolver): the app writes this file and a
dist-info naming `register` beside it, in a folder on vLLM's import path. Only the standard
library, and vLLM's own modules inside `register`: the image holds vLLM and nothing of ours.
"""

from __future__ import annotations  # `str | None` also on the Python 3.9 and 3.10 images

import json
import os
import re
import stat

# Where the staged adapters are: set by the app (the adapters volume, or a local folder).
FOLDER_VARIABLE = "DEPLOYER_ADAPTER_FOLDER"
# Written by the staging after each adapter's folder is in place: {"adapters": {name: {...}}}.
MANIFEST_FILE = "deployer-adapters.json"
# A folder name: no separator, no leading dot (so no `.`, `..`, or a folder being staged).
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Each version of an adapter in its own folder, `<name>@<hash of its source>`: vLLM keys its prefix
# cache by name and folder, so a new version must not reuse the old one's.
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}@[0-9a-f]{12}")
CONFIG_FILE = "adapter_config.json"
# Larger JSON files than these are not read: the manifest lists names, a config a few settings.
MANIFEST_BYTES = 4 * 1024 * 1024
CONFIG_BYTES = 1024 * 1024
RESOLVER_NAME = "deployer staged adapters"


def _json_file(path: str, limit: int):
    """The JSON in `path` if it is a plain file of at most `limit` bytes, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            found = os.fstat(handle.fileno())
            if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
                return None
            return json.loads(handle.read(limit + 1))
    except (OSError, ValueError):
        return None


def staged(folder: str) -> dict:
    """The manifest's adapters: name → {"source", "base", "folder", "staged_at"} (empty if
    unreadable)."""
    manifest = _json_file(os.path.join(folder, MANIFEST_FILE), MANIFEST_BYTES)
    adapters = manifest.get("adapters") if isinstance(manifest, dict) else None
    return adapters if isinstance(adapters, dict) else {}


def staged_adapter(folder: str, base_model_name: str, name) -> str | None:
    """The folder vLLM may load adapter `name` from (the manifest's version of it), or None if it
    is not one staged for it."""
    if not folder or not isinstance(name, str) or not NAME.fullmatch(name):
        return None
    entry = staged(folder).get(name)
    version = entry.get("folder") if isinstance(entry, dict) else None
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        return None
    if version.partition("@")[0] != name:
        return None  # another adapter's folder
    root = os.path.realpath(folder)
    path = os.path.join(root, version)
    if os.path.dirname(os.path.realpath(path)) != root or not os.path.isdir(path):
        return None  # a link out of the folder (staging never makes one)
    config = _json_file(os.path.join(path, CONFIG_FILE), CONFIG_BYTES)
    if not isinstance(config, dict) or config.get("base_model_name_or_path") != base_model_name:
        return None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        return None
    return path


def register() -> None:
    """vLLM's plugin entry point: register the resolver (in every vLLM process; only the API
    server asks it)."""
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    folder = os.environ.get(FOLDER_VARIABLE, "")
    if not os.path.isdir(folder):
        raise RuntimeError(
            f"{FOLDER_VARIABLE} names no folder ({folder!r}): start vLLM from the rendered app"
        )

    class StagedAdapters(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str):
            path = staged_adapter(folder, base_model_name, lora_name)
            if path is None:
                return None
            # vLLM sets the id it uses itself; the name's hash, as its own resolver, until then.
            return LoRARequest(
                lora_name=lora_name, lora_int_id=abs(hash(lora_name)) or 1, lora_path=path
            )

    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, StagedAdapters())
