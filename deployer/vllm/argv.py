"""The vLLM server command line: decided here, in one place, and rendered into the app as data.

The app adds what is only known in the container (the model and adapter folders, host, port);
everything else, including the user's extra flags, is the `VLLM_FLAGS` list built here.
"""

from __future__ import annotations

import json
import re
from typing import Any

from deployer.spec.model import AdapterConfig, Deployment
from deployer.vllm import catalog
from deployer.vllm.catalog import Flag

VLLM_ENTRYPOINT = ("python", "-m", "vllm.entrypoints.openai.api_server")
SAFE_PATH_PYTHON = (3, 11)  # the first Python with -P


def vllm_server(python: str) -> list[str]:
    """The server's command before its flags. With -P, `python -m` leaves its working folder off
    the import path: vLLM runs in /root, where the deployment's local folders are copied, and
    flags naming a class to import (scheduler-cls, worker-cls, ...) must not reach a committed one."""
    major, _, minor = python.partition(".")
    if (int(major), int(minor)) >= SAFE_PATH_PYTHON:
        return [VLLM_ENTRYPOINT[0], "-P", *VLLM_ENTRYPOINT[1:]]
    return list(VLLM_ENTRYPOINT)


VLLM_PORT = 8000

# With an API key, the app's runtime copies this middleware (templates/vllm_auth_guard.py, written
# beside the app) where vLLM can import it: vLLM's own key check leaves /invocations, /tokenize,
# /metrics... open.
AUTH_GUARD_MODULE = "deployer_auth_guard"
AUTH_GUARD = f"{AUTH_GUARD_MODULE}.RequireApiKey"
# The middleware reads a salt and the key's salted SHA-256 from here: vLLM's process never gets the key.
AUTH_DIGEST_VARIABLE = "DEPLOYER_AUTH_DIGEST"
# A dynamic deployment turns on vLLM's runtime LoRA updating, which also opens routes that load any
# path in the container a caller names: this middleware of the same module closes them to everyone.
ADAPTER_ROUTES_GUARD = f"{AUTH_GUARD_MODULE}.CloseAdapterRoutes"
# The resolver vLLM asks about a model name it does not know (templates/deployer_lora_resolver.py,
# written beside the app): it serves only adapters staged into the deployment's adapter folder.
LORA_RESOLVER_MODULE = "deployer_lora_resolver"
# The names it serves: an adapter's folder in the adapter folder, so no path separator and no
# leading dot (`..`, the staging folders); the schema's adapter names are a subset.
STAGED_ADAPTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Files the adapter folder holds beside the adapters' folders: what is staged there, and what a
# hot-add recorded (deploy/hot_add.py). Names reserved, so that a listing of the folder, and the
# manifest's keys, never mix an adapter up with one of them.
ADAPTER_MANIFEST_FILE = "deployer-adapters.json"
HOT_ADD_STATE_FILE = "deployer-state.json"
ADAPTER_FOLDER_FILES = (ADAPTER_MANIFEST_FILE, HOT_ADD_STATE_FILE)
# Names that look like credentials: refused in image.env, left out of vLLM's process environment.
# vLLM's own settings (VLLM_*, such as VLLM_MULTI_STREAM_GEMM_TOKEN_THRESHOLD) are not, but its
# key is; nor are the tokenizers library's (TOKENIZERS_PARALLELISM).
CREDENTIAL_NAME = re.compile(
    r"^(?!VLLM_(?!API_KEY$)).*(TOKEN(?!IZER)|SECRET|PASSWORD|PASSWD|PASSPHRASE|"
    r"CREDENTIAL|PRIVATE_KEY|API_?KEY|ACCESS_KEY|JWT|_KEY$|_PASS$|_PWD$|"
    r"(^|_)DSN$|(^|_)PAT$|(^|_)AUTH)",
    re.IGNORECASE,
)

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
    "enable-lora": "adapters (LoRA is enabled when at least one adapter is listed, or "
    "adapter_loading is dynamic)",
    "lora-modules": "adapters",
    "tensor-parallel-size": 'gpu (its count, e.g. "H100:2")',
    "enable-sleep-mode": "cold_start.gpu_snapshot (sleep mode is what the snapshot captures)",
    "download-dir": "nothing: weights live in the Hugging Face cache volume, where prefetch puts "
    "them and restarts find them",
    "config": "vllm.args itself: vLLM would take every flag in that file unchecked (an empty "
    "api-key there turns auth off)",
    "root-path": "nothing: Modal serves the app at / (and vLLM's API key check strips a root "
    "path first: `/v` left /v1 unguarded)",
    "uds": "nothing: the app's web server listens on port 8000, not a socket file",
    "headless": "nothing: the app serves the OpenAI API from this container",
    "grpc": "nothing: the app serves the HTTP API on port 8000 (a gRPC server would answer "
    "without the API key middleware)",
    "grpc-port": "nothing: the app serves the HTTP API on port 8000 (a gRPC server would answer "
    "without the API key middleware)",
}

# The weight files vLLM reads for each --load-format, in its order of preference: it loads the
# first kind the repo has (vllm/model_executor/model_loader/default_loader.py, 0.11 to 0.33; "auto"
# and "hf" fall back to .pt). Prefetch downloads that kind and skips the others.
WEIGHT_FILES_BY_LOAD_FORMAT: dict[str, list[str]] = {
    "auto": ["*.safetensors", "*.bin", "*.pt"],
    "hf": ["*.safetensors", "*.bin", "*.pt"],
    "safetensors": ["*.safetensors"],
    "fastsafetensors": ["*.safetensors"],
    "instanttensor": ["*.safetensors"],
    "mistral": [
        "*.safetensors"
    ],  # vLLM reads consolidated*.safetensors; a repo's HF-format copy comes too
    "pt": ["*.pt"],
    "npcache": ["*.bin", "*.pt"],
}
WEIGHT_FILE_KINDS = ["*.safetensors", "*.bin", "*.pt", "*.pth"]
# Mistral's own format. Wherever a model holds such a file (any folder), vLLM's "auto" load, config
# and tokenizer formats all switch to Mistral's: consolidated*.safetensors, params.json, tekken.json
# in place of the config.json, weights and tokenizer the deployer checked.
MISTRAL_WEIGHTS = "consolidated*.safetensors"


def unfetched_files(deployment: Deployment) -> list[str]:
    """Hub files the app leaves out of its download: Mistral-format weights, unless `load-format:
    mistral` asks for them."""
    return [] if mistral_asked(deployment) else [MISTRAL_WEIGHTS, f"*/{MISTRAL_WEIGHTS}"]


def mistral_asked(deployment: Deployment) -> bool:
    """`load-format: mistral`, as vLLM reads it (lower-cased)."""
    return str(dict(deployment.vllm.args).get("load-format", "")).lower() == "mistral"


# vLLM accepts only these --max-lora-rank values (`MaxLoRARanks` in vllm/config/lora.py, the same
# from 0.11 to 0.32); used when the pinned version has no catalog to read them from. vLLM
# allocates LoRA buffers for the maximum rank, so the smallest value that fits wins.
MAX_LORA_RANK_CHOICES = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
# Adapters resident on the GPU at once: each slot costs memory at the maximum rank, so the derived
# value stops here; set `max-loras` in vllm.args to go beyond it.
MAX_LORAS_CAP = 8


def lora_rank_choices(version: str) -> tuple[int, ...]:
    flags = catalog.load(version)
    flag = flags.lookup("max-lora-rank") if flags else None
    return tuple(flag.choices) if flag and flag.choices else MAX_LORA_RANK_CHOICES


def needed_lora_rank(deployment: Deployment) -> tuple[int, str] | None:
    """(largest adapter rank, that adapter's name), if every adapter's rank is known."""
    configs = [
        (a.config.rank, a.name) for a in deployment.adapters if isinstance(a.config, AdapterConfig)
    ]
    if not deployment.adapters or len(configs) != len(deployment.adapters):
        return None
    return max(configs, key=lambda pair: pair[0])


def derived_lora_flags(deployment: Deployment) -> dict[str, int]:
    """LoRA limits derived from the adapters, for those the user did not set in vllm.args."""
    explicit = dict(deployment.vllm.args)
    derived: dict[str, int] = {}
    needed = needed_lora_rank(deployment)
    if needed and "max-lora-rank" not in explicit:
        fitting = [c for c in lora_rank_choices(deployment.vllm.version) if c >= needed[0]]
        if fitting:
            derived["max-lora-rank"] = fitting[0]
    if "max-loras" in explicit:
        return derived
    if deployment.loads_adapters_dynamically:
        # Not the count: adapters staged later must fit without new flags (a restart).
        derived["max-loras"] = MAX_LORAS_CAP
    elif len(deployment.adapters) > 1:
        derived["max-loras"] = min(len(deployment.adapters), MAX_LORAS_CAP)
    return derived


def weight_files(deployment: Deployment) -> list[str] | None:
    """The weight file patterns vLLM would pick from, best first; None for load formats that read
    something else (gguf, bitsandbytes, tensorizer...), whose repos prefetch downloads whole."""
    load_format = dict(deployment.vllm.args).get("load-format", "auto")
    return WEIGHT_FILES_BY_LOAD_FORMAT.get(load_format) if isinstance(load_format, str) else None


def flag_tokens(name: str, value: Any, flag: Flag | None = None) -> list[str]:
    """One `vllm.args` entry as command-line tokens, the way that flag parses them.

    With the pinned version's catalog entry (`flag`): booleans follow the action kind (a
    store_true flag set to false is simply left out: `--no-x` would not parse), lists are
    repeated for `append` flags, follow the flag for nargs flags, and are JSON otherwise.
    Without one: true → `--name`, false → `--no-name`, a list → `--name v1 v2`.
    Mappings are always JSON.
    """
    option = f"--{name}"
    if isinstance(value, bool):
        if flag is None:
            return [option] if value else [f"--no-{name}"]
        if flag.kind == "boolean_optional":
            return [option] if value else negated_options(name, flag)[:1]
        if flag.kind == "store_false":
            return [] if value else [option]
        return [option] if value else []
    if isinstance(value, dict):
        return [option, _json(value)]
    if isinstance(value, list):
        if flag is not None and flag.kind == "append":
            return [token for item in value for token in (option, _scalar(item))]
        if flag is None or flag.takes_list:
            return [option, *(_scalar(v) for v in value)]
        return [option, _json(value)]
    return [option, _scalar(value)]


def negated_options(name: str, flag: Flag) -> list[str]:
    """How this version spells `name: false`: `--no-x`, or `--disable-x` for an `--enable-x` (and
    the reverse), whichever the flag has. Empty if it has none (the flag check reports that)."""
    candidates = [f"--no-{name}"]
    for positive, negative in (("enable-", "disable-"), ("disable-", "enable-")):
        if name.startswith(positive):
            candidates.append(f"--{negative}{name[len(positive) :]}")
    return [c for c in candidates if c in flag.options]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def base_revision(deployment: Deployment) -> str | None:
    """What the command passes as `--revision`, when the YAML names a revision: the commit the
    lock pins it to, else the revision as written."""
    written = deployment.base_model.source.revision
    if not written:
        return None
    return (deployment.lock and deployment.lock.base_commit) or written


def _separate_tokenizer(deployment: Deployment) -> bool:
    """Whether `vllm.args.tokenizer` names a repo (or folder) other than the base model's."""
    named = dict(deployment.vllm.args).get("tokenizer")
    return isinstance(named, str) and named != deployment.base_model.source.repo


def tokenizer_revision(deployment: Deployment) -> str | None:
    """The revision vLLM reads a tokenizer that `vllm.args.tokenizer` names at: vLLM takes
    `--revision` for it unless given `--tokenizer-revision`, which the command passes when
    `--revision` is a locked commit of another repo (a commit is no revision of the tokenizer's)."""
    if _separate_tokenizer(deployment):
        return deployment.base_model.source.revision
    return base_revision(deployment)


def vllm_flags(deployment: Deployment) -> list[str]:
    """Every flag after `--model`, except host, port and the per-container `--lora-modules` paths."""
    base = deployment.base_model
    flags: list[str] = []
    if revision := base_revision(deployment):
        flags += ["--revision", revision]
        if revision != base.source.revision and _separate_tokenizer(deployment):
            flags += ["--tokenizer-revision", str(base.source.revision)]
    flags += ["--served-model-name", base.served_name]
    if deployment.gpu.count > 1:
        # More than one GPU per container only helps if vLLM splits the model across them.
        flags += ["--tensor-parallel-size", str(deployment.gpu.count)]
    if deployment.cold_start.gpu_snapshot:
        flags += ["--enable-sleep-mode"]  # the snapshot is taken of a sleeping engine
    if deployment.adapters or deployment.loads_adapters_dynamically:
        flags += ["--enable-lora"]
        for name, value in derived_lora_flags(deployment).items():
            flags += flag_tokens(name, value)
    flags_of_version = catalog.load(deployment.vllm.version)
    # Sorted: the order of keys in the YAML changes nothing vLLM does, so it must not change the app.
    for name, value in sorted(deployment.vllm.args, key=lambda item: item[0]):
        flags += flag_tokens(
            name, value, flags_of_version.lookup(name) if flags_of_version else None
        )
    if deployment.auth.api_key_secret:
        # Last: Starlette wraps each added middleware around the ones before it, so this one sees
        # every request first, before any middleware the YAML names.
        flags += ["--middleware", AUTH_GUARD]
    if deployment.loads_adapters_dynamically:
        # Outermost of all: the adapter routes answer 403 to everyone, key or no key.
        flags += ["--middleware", ADAPTER_ROUTES_GUARD]
    return flags
