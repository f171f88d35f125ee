"""The vLLM server command line: decided here, in one place, and rendered into the app as data.

The app adds what is only known in the container (the model and adapter folders, host, port);
everything else, including the user's extra flags, is the `VLLM_FLAGS` list built here.
"""

from __future__ import annotations

import json
from typing import Any

from .model import AdapterConfig, Deployment

VLLM_ENTRYPOINT = ("python", "-m", "vllm.entrypoints.openai.api_server")
VLLM_PORT = 8000

# Flags the deployer sets from other fields; a user setting them in `vllm.args` would fight the
# deployer (or, for --lora-modules, silently drop adapters), so that is an error naming the owner.
MANAGED_FLAGS: dict[str, str] = {
    "model": "base_model.repo or base_model.path",
    "revision": "base_model.revision",
    "served-model-name": "base_model.served_name",
    "tokenizer-revision": "base_model.revision",
    "host": "nothing: the app listens on all interfaces inside its container",
    "port": "nothing: the app's web server port is fixed at 8000",
    "api-key": "auth.api_key (a Modal Secret holding VLLM_API_KEY)",
    "enable-lora": "adapters (LoRA is enabled when at least one adapter is listed)",
    "lora-modules": "adapters",
    "tensor-parallel-size": "gpu (its count, e.g. \"H100:2\")",
}


# vLLM accepts only these --max-lora-rank values (`MaxLoRARanks` in vllm/config/lora.py, the same
# from 0.11 to 0.32); it allocates LoRA buffers for the maximum rank, so the smallest that fits wins.
MAX_LORA_RANK_CHOICES = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
# Adapters resident on the GPU at once: each slot costs memory at the maximum rank, so the derived
# value stops here; set `max-loras` in vllm.args to go beyond it.
MAX_LORAS_CAP = 8


def needed_lora_rank(deployment: Deployment) -> tuple[int, str] | None:
    """(largest adapter rank, that adapter's name), if every adapter's rank is known."""
    configs = [(a.config.rank, a.name) for a in deployment.adapters if isinstance(a.config, AdapterConfig)]
    if not deployment.adapters or len(configs) != len(deployment.adapters):
        return None
    return max(configs, key=lambda pair: pair[0])


def derived_lora_flags(deployment: Deployment) -> dict[str, int]:
    """LoRA limits derived from the adapters, for those the user did not set in vllm.args."""
    explicit = dict(deployment.vllm.args)
    derived: dict[str, int] = {}
    needed = needed_lora_rank(deployment)
    if needed and "max-lora-rank" not in explicit:
        fitting = [c for c in MAX_LORA_RANK_CHOICES if c >= needed[0]]
        if fitting:
            derived["max-lora-rank"] = fitting[0]
    if len(deployment.adapters) > 1 and "max-loras" not in explicit:
        derived["max-loras"] = min(len(deployment.adapters), MAX_LORAS_CAP)
    return derived


def flag_tokens(name: str, value: Any) -> list[str]:
    """One `vllm.args` entry as command-line tokens.

    true → `--name`; false → `--no-name` (vLLM's boolean flags accept the negated form);
    a list → `--name v1 v2`; a mapping → `--name '<json>'`; anything else → `--name value`.
    """
    flag = f"--{name}"
    if value is True:
        return [flag]
    if value is False:
        return [f"--no-{name}"]
    if isinstance(value, list):
        return [flag, *(_scalar(v) for v in value)]
    if isinstance(value, dict):
        return [flag, json.dumps(value, sort_keys=True, separators=(",", ":"))]
    return [flag, _scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def vllm_flags(deployment: Deployment) -> list[str]:
    """Every flag after `--model`, except host, port and the per-container `--lora-modules` paths."""
    base = deployment.base_model
    flags: list[str] = []
    if base.source.revision:
        flags += ["--revision", base.source.revision]
    flags += ["--served-model-name", base.served_name]
    if deployment.gpu.count > 1:
        # More than one GPU per container only helps if vLLM splits the model across them.
        flags += ["--tensor-parallel-size", str(deployment.gpu.count)]
    if deployment.adapters:
        flags += ["--enable-lora"]
        for name, value in derived_lora_flags(deployment).items():
            flags += flag_tokens(name, value)
    for name, value in deployment.vllm.args:
        flags += flag_tokens(name, value)
    return flags

