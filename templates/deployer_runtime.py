"""What a rendered app does besides laying out its Modal functions: fetch the weights, keep
credentials out of vLLM's process, guard every route with the API key, wait for vLLM to be up.

The deployer writes this file unchanged beside every app.py it renders, and the app adds it to
its image, so `import deployer_runtime` finds it both where `modal deploy` runs and in the
container. Nothing here depends on a deployment: the app holds every value of its own and passes
it in. Only the standard library is imported at the top: `modal deploy` needs nothing but the
`modal` package (huggingface_hub, in the image, is imported by the functions that download).
"""

from __future__ import annotations  # `str | None` also on the Python 3.9 and 3.10 images

import hashlib
import json
import os
import re
import secrets
import tempfile
import time
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

# The API key middleware vLLM imports with --middleware: written beside this file by the deployer.
AUTH_GUARD_FILE = "deployer_auth_guard.py"
# Where the middleware reads a salt and the key's salted SHA-256: vLLM's process never gets the key.
AUTH_DIGEST_VARIABLE = "DEPLOYER_AUTH_DIGEST"
# A second copy of the weights some repos carry, in their original format: never fetched.
ORIGINAL_WEIGHTS = "original/*"


# ## Weights, downloaded here rather than by vLLM (which then needs no Hub token)


def weights(
    base_model: str,
    revision: str | None,
    adapters: dict,
    local_folders: dict,
    *,
    here: Path | None = None,
    weight_files: list | None,
    weight_file_kinds: list,
    not_fetched: list,
) -> tuple:
    """The `--model` folder and each adapter's folder, downloading Hub repos first.

    `local_folders` maps a folder in the container to a local folder relative to `here`, the app's
    own folder: given `here`, they are read where they are on this machine rather than where the
    container has them, so the deployer can run the very same command outside Modal. The other
    keywords say which of the base model's files to fetch (see `hub_model`).
    """
    from huggingface_hub import snapshot_download

    def folder(container_path: str) -> str:
        if here is None:
            return container_path
        return str((here / local_folders[container_path]).resolve())

    if base_model in local_folders:
        model = folder(base_model)
    else:
        model = hub_model(base_model, revision, weight_files, weight_file_kinds, not_fetched)
    adapter_folders = {}
    for name, source in adapters.items():
        if "repo" in source:
            adapter_folders[name] = snapshot_download(source["repo"], revision=source["revision"])
        else:
            adapter_folders[name] = folder(source["folder"])
    return model, adapter_folders


def hub_model(
    repo: str,
    revision: str | None,
    weight_files: list | None,
    weight_file_kinds: list,
    not_fetched: list,
) -> str:
    """The model's folder in the Hugging Face cache, downloaded first if it is not there yet.

    `weight_files`: the kinds of weight file vLLM reads with the deployment's load format, best
    first; vLLM loads the first kind the repo has, so only that kind of `weight_file_kinds` is
    fetched (None: all of them). `not_fetched`: files never fetched (Mistral-format weights, beside
    which vLLM would load Mistral's formats in place of the config.json that was checked)."""
    from huggingface_hub import constants, list_repo_files, snapshot_download

    skipped = [ORIGINAL_WEIGHTS, *not_fetched]
    if weight_files is not None and not constants.HF_HUB_OFFLINE:
        try:
            files = list_repo_files(repo, revision=revision)
        except Exception:  # the Hub unreachable: snapshot_download then serves the cached copy
            files = None
        if files is not None:
            loaded = next(
                (kind for kind in weight_files if any(fnmatch(f, kind) for f in files)), None
            )
            skipped += [kind for kind in weight_file_kinds if kind != loaded]
    folder = snapshot_download(repo, revision=revision, ignore_patterns=skipped)
    return without_unfetched(folder, not_fetched)


def without_unfetched(folder: str, not_fetched: list) -> str:
    """`folder`, or, if it holds files `not_fetched` names (the cache volume is shared: another
    deployment of this model may have fetched them), a folder of links to all its other files."""
    root = Path(folder)
    files = [path.relative_to(root) for path in root.rglob("*") if path.is_file()]
    kept = [name for name in files if not any(fnmatch(str(name), p) for p in not_fetched)]
    if len(kept) == len(files):
        return folder
    view = Path(tempfile.mkdtemp(prefix="model-"))
    for name in kept:
        (view / name).parent.mkdir(parents=True, exist_ok=True)
        (view / name).symlink_to((root / name).resolve())
    return str(view)


# ## vLLM's environment: no credentials, and the API key middleware


def without_credentials(credential_name: str, kept: list) -> dict:
    """This process's environment without the variables whose names match `credential_name` (a
    regular expression, matched ignoring case), except those `kept` names.

    vLLM opens files that a model's own configs name (a tokenizer's vocabulary, for one), so a
    crafted config could make it serve /proc/self/environ: Hub downloads happen in the app's
    process before vLLM starts, and the API key middleware gets only a digest of the key."""
    return {
        name: value
        for name, value in os.environ.items()
        if name in kept or not re.search(credential_name, name, re.IGNORECASE)
    }


def with_auth_guard(environment: dict, folder: str) -> dict:
    """`environment` plus the API key middleware, copied into `folder` and put first on vLLM's
    import path, and the salted digest it checks of this process's VLLM_API_KEY."""
    key = os.environ.get("VLLM_API_KEY", "")
    if not key:  # refuse to start rather than serve every route to anyone
        raise RuntimeError(
            "VLLM_API_KEY is not set: the Modal Secret named by auth.api_key must hold it"
        )
    salt = secrets.token_bytes(16)
    guard = Path(__file__).with_name(AUTH_GUARD_FILE).read_bytes()
    Path(folder, AUTH_GUARD_FILE).write_bytes(guard)
    return {
        **environment,
        "PYTHONPATH": os.pathsep.join(filter(None, [folder, environment.get("PYTHONPATH")])),
        AUTH_DIGEST_VARIABLE: salt.hex() + ":" + hashlib.sha256(salt + key.encode()).hexdigest(),
    }


# ## Talking to the vLLM server this container started (for GPU snapshots)


def local_request(port: int, method: str, path: str, body: dict | None = None) -> None:
    """Send a request to vLLM on this container, with the API key if there is one."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("VLLM_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["VLLM_API_KEY"]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    urllib.request.urlopen(request, timeout=120).close()


def wait_until_healthy(process, port: int, timeout: float) -> None:
    """Return once vLLM answers /health; raise if it exits first or takes over `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM exited with code {process.returncode} while starting")
        try:
            return local_request(port, "GET", "/health")
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"vLLM was not healthy within {timeout} s")
