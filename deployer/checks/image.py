"""The container image: what it starts from (`image.base`), the Python Modal adds to it
(`image.python`), what it installs (`image.pip`) and sets in every process, vLLM's included
(`image.env`).

The Python must be one the pinned vLLM release installs on (its `Requires-Python`, recorded in
its flag catalog): otherwise `pip install vllm==VERSION` fails while Modal builds the image,
after the user has waited for it.

A base image and a package are code: a package can hook into vLLM's start-up (a
`vllm.general_plugins` entry point runs in the API server, where it could read the Secrets or
unhook the API key middleware). Only NVIDIA's CUDA images and the packages the app itself needs
pass quietly; anything else is a warning to review as code.

Environment variables are code as much as settings: HOME moves Python's user site-packages
(whose .pth files run at every start) into a committed folder, PATH chooses which `python` runs,
LD_PRELOAD loads a library, a cache folder loads compiled artifacts. So only variables known to
tune and nothing more pass quietly; the dangerous families are named, and everything else is a
warning to review (`validate --strict` stops on it)."""

from __future__ import annotations

import re
from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import Deployment
from deployer.vllm import catalog
from deployer.vllm.argv import CREDENTIAL_NAME
from deployer.vllm.catalog import PythonRange

# NVIDIA's CUDA images (Docker Hub's official nvidia/cuda, or NVIDIA's own registry), any tag.
CUDA_IMAGE = re.compile(
    r"^(docker\.io/|nvcr\.io/)?nvidia/cuda(:[A-Za-z0-9._-]+)?(@sha256:[a-f0-9]{64})?$"
)
# What the app itself imports (huggingface_hub in download_weights) and its own transfer backends.
KNOWN_PACKAGES = frozenset({"huggingface-hub", "hf-transfer", "hf-xet"})
PACKAGE_NAME = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?"
)  # the name, and any extras (which install more)

# Known to tune and nothing more: threads, logging, timeouts, which kernel to use.
HARMLESS = frozenset(
    {
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "PYTHONFAULTHANDLER",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONNOUSERSITE",
        "PYTHONSAFEPATH",
        "TOKENIZERS_PARALLELISM",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "HF_HUB_ENABLE_HF_TRANSFER",
        "HF_HUB_DISABLE_TELEMETRY",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "HF_HUB_OFFLINE",
        "HF_HUB_DOWNLOAD_TIMEOUT",
        "HF_HUB_ETAG_TIMEOUT",
        "HF_XET_HIGH_PERFORMANCE",
        "TRANSFORMERS_OFFLINE",
        "TRANSFORMERS_VERBOSITY",
        "CUDA_DEVICE_ORDER",
        "CUDA_LAUNCH_BLOCKING",
        "PYTORCH_CUDA_ALLOC_CONF",
        "TORCH_CUDA_ARCH_LIST",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING",
        "NCCL_DEBUG",
        "NCCL_P2P_DISABLE",
        "NCCL_IB_DISABLE",
        "NCCL_CUMEM_ENABLE",
        "NCCL_SHM_DISABLE",
        "VLLM_ATTENTION_BACKEND",
        "VLLM_USE_V1",
        "VLLM_WORKER_MULTIPROC_METHOD",
        "VLLM_USE_FLASHINFER_SAMPLER",
        "VLLM_FLASH_ATTN_VERSION",
        "VLLM_ENGINE_ITERATION_TIMEOUT_S",
        "VLLM_RPC_TIMEOUT",
        "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
        "VLLM_LOG_STATS_INTERVAL",
        "VLLM_NO_USAGE_STATS",
        "VLLM_DO_NOT_TRACK",
        "DO_NOT_TRACK",
        "VLLM_USE_TRITON_FLASH_ATTN",
        "VLLM_MARLIN_USE_ATOMIC_ADD",
        "VLLM_USE_DEEP_GEMM",
        "VLLM_ENABLE_V1_MULTIPROCESSING",
        "VLLM_SLEEP_WHEN_IDLE",
    }
)
# Harmless only as names: glibc reads a locale or time zone value holding a slash, or TZ's `:file`,
# as a path to a file it parses (a committed one, under /root/sources).
LOCALE_NAME = re.compile(r"^[A-Za-z0-9_.@-]*$")
NAMED = {
    "LANG": LOCALE_NAME,
    "LC_ALL": LOCALE_NAME,
    "TZ": re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"),
}
# Variables that load code into every process of the container (Python's, the dynamic loader's,
# shells' start-up files, compilers, folders of compiled artifacts or plugins). vLLM's server
# also starts the SageMaker standards bootstrap (model_hosting_container_standards), which loads
# the script CUSTOM_SCRIPT_FILENAME names, handlers and middleware from CUSTOM_FASTAPI_*, and pip
# installs a requirements.txt under SAGEMAKER_MODEL_PATH (STANDARD_AUTO_INSTALL_REQ); and
# VLLM_USE_RUST_FRONTEND swaps the HTTP server for another program.
CODE = re.compile(
    r"^(PYTHON.*|LD_.*|DYLD_.*|PATH|XDG_.*|GCONV_PATH|BASH_ENV|ENV|PERL5OPT|PERL5LIB|"
    r"NODE_OPTIONS|CC|CXX|.*_PATH|.*_(DIR|ROOT)|.*PLUGINS?|.*_MODULES_CACHE|"
    r"VLLM_ALLOW_INSECURE_SERIALIZATION|CUSTOM_.*|SAGEMAKER_.*|STANDARD_.*|"
    r"VLLM_USE_RUST_FRONTEND|VLLM_RUST_.*)$"
)
# Variables that send the container's downloads or data (and a token from its Secrets) elsewhere.
NETWORK = re.compile(
    r"^(.*_(URL|URI|ENDPOINT|SERVER|HOST|PROXY)|ALL_PROXY|REQUESTS_CA_BUNDLE|"
    r"SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|VLLM_USE_MODELSCOPE|MODELSCOPE_.*)$",
    re.IGNORECASE,
)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Where huggingface_hub keeps its cache, directly or through the home folder: the app mounts the
# cache volume at its default place, so moving it would make vLLM download the weights again on
# every cold start, past the prefetch (and HOME also moves Python's user site-packages).
HF_CACHE = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "HOME",
    "XDG_CACHE_HOME",
)
DEV_MODE = "VLLM_SERVER_DEV_MODE"
# vLLM's default --log-level: below INFO it writes prompts and replies into the logs, as the flag does.
LOGGING_LEVEL, QUIET_LEVELS = "VLLM_LOGGING_LEVEL", ("CRITICAL", "ERROR", "WARNING", "INFO")


def check_image_env(deployment: Deployment) -> Iterable[Diagnostic]:
    for name, value in deployment.image.env:
        where = ("image", "env", name)
        if CONTROL.search(value):
            yield at(
                deployment,
                where,
                f"image.env {name} holds a line break or control character: Modal writes "
                "each variable on a line of the image's Dockerfile (ENV), where a line "
                "break would start another instruction",
                hint="keep image.env values on one line",
                rule="image.env-control",
                key=False,
            )
        elif name in HF_CACHE:
            yield at(
                deployment,
                where,
                f"image.env {name} would move the Hugging Face cache off the cache volume: "
                "every cold start would download the weights again, and prefetch would "
                "fill a cache vLLM does not read",
                hint=f"remove {name}; the app mounts the `huggingface-cache` volume at "
                "huggingface_hub's default cache",
                rule="image.env-cache",
            )
        elif CREDENTIAL_NAME.search(name):
            yield at(
                deployment,
                where,
                f"image.env {name} looks like a credential; image settings are written "
                "into the rendered app in plain text",
                hint="move it into a Modal Secret (`modal secret create NAME KEY=value`) and "
                "list the secret under `secrets:`",
                rule="secrets.in-env",
            )
        elif name == DEV_MODE and not deployment.auth.proxy:
            yield at(
                deployment,
                where,
                f"image.env {DEV_MODE} turns on vLLM's dev-mode routes (/server_info, "
                "/collective_rpc, /sleep, weight updates), which vLLM's own API key check "
                "leaves open and which no API client should reach: anyone with the URL "
                "(with the app's key middleware, anyone with the key) could read the "
                "server's configuration, stop it or replace its weights",
                hint="use `auth: {proxy: true}` (Modal checks every route), or remove it",
                rule="image.env-dev-routes",
            )
        elif name == LOGGING_LEVEL:
            if value.strip().upper() not in QUIET_LEVELS:  # vLLM upper-cases it
                yield at(
                    deployment,
                    where,
                    f"image.env {LOGGING_LEVEL} {value!r} is below INFO: vLLM writes "
                    "prompts and replies into the logs (Modal's log stream)",
                    hint="use INFO, or remove it",
                    rule="image.env-exposes",
                    severity=Severity.WARNING,
                    key=False,
                )
        elif name in HARMLESS or (name in NAMED and NAMED[name].match(value)):
            continue
        elif CODE.match(name):
            yield at(
                deployment,
                where,
                f"image.env {name} loads code into every process in the container",
                hint="review it as code; remove it unless the image needs it",
                rule="image.env-runs-code",
                severity=Severity.WARNING,
            )
        elif NETWORK.match(name):
            yield at(
                deployment,
                where,
                f"image.env {name} sends the container's downloads or data (and any "
                f"Hugging Face token from its Secrets) to {value!r}",
                hint="review it; remove it unless the image needs it",
                rule="image.env-network",
                severity=Severity.WARNING,
            )
        else:
            yield at(
                deployment,
                where,
                f"image.env {name} is not among the variables known only to tune the "
                "container; a variable can make it run code (HOME, PATH, LD_PRELOAD), "
                "read files or send data out",
                hint="review what it does as you would code",
                rule="image.env-unreviewed",
                severity=Severity.WARNING,
            )


def check_image_code(deployment: Deployment) -> Iterable[Diagnostic]:
    image = deployment.image
    if not CUDA_IMAGE.match(image.base):
        yield at(
            deployment,
            ("image", "base"),
            f"image.base {image.base} is not one of NVIDIA's CUDA images: whatever it "
            "holds runs in the container, with the deployment's Secrets",
            hint="review the image as code (pin it by @sha256 digest), or use "
            "nvidia/cuda:<version>-devel-ubuntu22.04",
            rule="image.base-unreviewed",
            severity=Severity.WARNING,
            key=False,
        )
    for i, requirement in enumerate(image.pip):
        named = PACKAGE_NAME.match(requirement)
        name, extras = named.group(0), named.group(2)
        if (
            re.sub(r"[-_.]+", "-", named.group(1)).lower() not in KNOWN_PACKAGES or extras
        ):  # PEP 503 names: hf_transfer is hf-transfer
            yield at(
                deployment,
                ("image", "pip", i),
                f"image.pip installs {name}: its code runs in the container, and a package "
                "can hook into vLLM's start-up (a vllm.general_plugins entry point) with "
                "the deployment's Secrets at hand",
                hint="review the package as code and pin it (==) to the version you read",
                rule="image.pip-code",
                severity=Severity.WARNING,
                key=False,
            )


# The Python 3 minor versions among which the nearest one vLLM supports is sought.
PYTHON_MINORS = range(30)


def check_image_python(deployment: Deployment) -> Iterable[Diagnostic]:
    python, version = deployment.image.python, deployment.vllm.version
    flags = catalog.load(version)
    if flags is None or not flags.requires_python:
        why = (
            f"there is no flag catalog for vLLM {version}"
            if flags is None
            else f"the flag catalog of vLLM {version} does not record its Requires-Python"
        )
        yield _python_unchecked(deployment, why, version)
        return
    try:
        allowed = PythonRange.parse(flags.requires_python)
    except ValueError as exc:
        yield _python_unchecked(deployment, f"{exc} (vLLM {version}'s catalog)", version)
        return
    if allowed.admits_series(python):
        return
    fitting = [m for m in PYTHON_MINORS if allowed.admits_series(f"3.{m}")]
    if fitting:
        minor = int(python.split(".")[1])
        nearest = min(fitting, key=lambda m: (abs(m - minor), -m))  # of two as near, the newer
        hint = (
            f'use image.python "3.{nearest}", the nearest version vLLM {version} supports '
            f"(Requires-Python {allowed})"
        )
    else:
        hint = f"no Python 3 release meets {allowed}; pin another vLLM version"
    yield at(
        deployment,
        ("image", "python"),
        f"image.python {python} is outside vLLM {version}'s Requires-Python "
        f"({allowed}): installing vllm=={version} would fail while Modal builds "
        "the image",
        hint=hint,
        rule="image.python-unsupported",
        key=False,
    )


def _python_unchecked(deployment: Deployment, why: str, version: str) -> Diagnostic:
    return at(
        deployment,
        ("image", "python"),
        f"image.python {deployment.image.python} not checked against the Python versions "
        f"vLLM {version} installs on: {why}",
        hint=f"extract the catalog with scripts/extract_vllm_flags.py --install {version}, "
        "which records it",
        rule="image.python-unchecked",
        severity=Severity.NOTE,
        key=False,
    )
