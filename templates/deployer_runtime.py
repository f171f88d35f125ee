"""What a rendered app does besides laying out its Modal functions: fetch the weights, keep
credentials out of vLLM's process, guard every route with the API key, start vLLM and wait for it
to be up (failing at once with its own words if it cannot start), and check it after a snapshot.

The deployer writes this file unchanged beside every app.py it renders, and the app adds it to
its image, so `import deployer_runtime` finds it both where `modal deploy` runs and in the
container. Nothing here depends on a deployment: the app holds every value of its own and passes
it in. Only the standard library is imported at the top: `modal deploy` needs nothing but the
`modal` package (huggingface_hub, in the image, is imported by the functions that download).
"""

from __future__ import annotations  # `str | None` also on the Python 3.9 and 3.10 images

import collections
import hashlib
import http.client
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
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


# ## Starting vLLM, and failing at once with its own words if it cannot start

# Lines of vLLM's output kept to quote when it fails, and the longest piece of a line read at once.
TAIL_LINES = 40
LINE_BYTES = 8192
# How long the reader gets to pass on vLLM's last lines after it exited (its engine processes,
# if they outlive it, keep the pipe open).
DRAIN_SECONDS = 5
PROGRESS_SECONDS = 10
# Requests to vLLM on this machine never go through a proxy the environment names.
_loopback = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class VllmProcess(subprocess.Popen):
    """vLLM started with its output through a pipe: a thread echoes every line as it comes (so
    `modal app logs` and the deployer's log file show all of it) and keeps the last TAIL_LINES."""

    def __init__(self, command: list, env: dict, echo=None, **options):
        super().__init__(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **options
        )
        self._tail = collections.deque(maxlen=TAIL_LINES)
        self._tail_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, args=(echo or _to_stdout,), daemon=True)
        self._reader.start()

    def _read(self, echo) -> None:
        for line in iter(lambda: self.stdout.readline(LINE_BYTES), b""):
            with self._tail_lock:
                self._tail.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            try:
                echo(line)
            except (OSError, ValueError):  # the echo's file closed: keep draining the pipe
                pass

    def tail(self, wait: float = 0) -> list:
        """vLLM's last lines, once it has written them all if it exited (waiting up to `wait` s)."""
        if self.poll() is not None:
            self._reader.join(wait)
        with self._tail_lock:
            return list(self._tail)


def _to_stdout(line: bytes) -> None:
    sys.stdout.write(line.decode("utf-8", "replace"))
    sys.stdout.flush()


def start_vllm(command: list, env: dict, echo=None, **options) -> VllmProcess:
    """Start vLLM by command name, its output echoed (`echo(line_bytes)`, by default to this
    process's stdout). `options` go to subprocess.Popen (a working folder, a session of its own)."""
    print("Starting vLLM:", shlex.join(command), flush=True)
    return VllmProcess(command, env, echo, **options)


class VllmStartFailed(RuntimeError):
    """vLLM exited while starting (`returncode` set), or did not answer /health in time."""

    def __init__(self, reason: str, returncode, tail: list):
        self.reason, self.returncode, self.tail = reason, returncode, tail
        quoted = "\n".join(tail) if tail else "(no output)"
        super().__init__(f"{reason}; vLLM's last lines:\n{quoted}")


def wait_until_healthy(process: VllmProcess, port: int, timeout: float, progress=None) -> None:
    """Return once vLLM answers GET /health on this machine's `port`.

    If vLLM exits first, raise VllmStartFailed at once, quoting its last lines: a container that
    cannot start fails in seconds, with vLLM's reason in the error, rather than holding its GPU
    until Modal's startup timeout. The same after `timeout` seconds (the caller stops vLLM).
    `progress`, if given, is told why it still waits every PROGRESS_SECONDS."""
    start = last_report = time.monotonic()
    problem = "not listening yet"
    while True:
        if process.poll() is not None:
            reason = f"vLLM exited with code {process.returncode} while starting"
            raise VllmStartFailed(reason, process.returncode, process.tail(DRAIN_SECONDS))
        wait = max(1.0, min(10.0, timeout - (time.monotonic() - start)))
        try:  # no API key: /health needs none
            _loopback.open(f"http://127.0.0.1:{port}/health", timeout=wait).close()
            return
        except urllib.error.HTTPError as exc:
            problem = f"GET /health answered {exc.code}"
        except urllib.error.URLError as exc:
            refused = isinstance(exc.reason, ConnectionRefusedError)
            problem = "not listening yet" if refused else f"{exc.reason}"
        except (OSError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            reason = f"vLLM did not answer /health within {timeout:.0f} s ({problem})"
            raise VllmStartFailed(reason, None, process.tail())
        if progress is not None and time.monotonic() - last_report >= PROGRESS_SECONDS:
            progress(f"waiting for vLLM's /health ({elapsed:.0f} s of {timeout:.0f} s): {problem}")
            last_report = time.monotonic()
        time.sleep(1)


# ## Talking to the vLLM server this container started (for GPU snapshots)


def local_request(port: int, method: str, path: str, body: dict | None = None):
    """Send a request to vLLM on this container, with the API key if there is one; its JSON
    answer (None if empty)."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("VLLM_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["VLLM_API_KEY"]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    with _loopback.open(request, timeout=120) as response:
        answer = response.read()
    return json.loads(answer) if answer.strip() else None


# ## Snapshots keep adapters honest

# vLLM issue #53888: after sleep level 1 and wake-up, LoRA can silently stop applying, so every
# adapter would answer like the base model. Each model's greedy answer to one prompt is recorded
# before the snapshot (which also loads every adapter) and asked again after wake-up.
PROBE = {
    "prompt": "The capital of France is",
    "max_tokens": 8,
    "temperature": 0,
    "ignore_eos": True,
}


def answers(port: int, model_ids: list) -> dict:
    """Each model's greedy completion of PROBE, in the order of `model_ids` (the base model first).
    Plain completions: a base model may have no chat template."""
    found = {}
    for model_id in model_ids:
        answer = local_request(port, "POST", "/v1/completions", {"model": model_id, **PROBE})
        found[model_id] = answer["choices"][0]["text"]
    return found


def check_answers(port: int, before: dict) -> None:
    """Raise, naming each model, unless every model answers PROBE as it did in `before` (taken
    before sleep, the base model first). Compared with its own earlier answer, not the base's: an
    adapter that answered like the base already before sleep is no regression."""
    after = answers(port, list(before))
    base = next(iter(before))
    problems = []
    for model_id, answer in after.items():
        if answer == before[model_id]:
            continue
        if model_id != base and answer == after[base]:
            problems.append(f"adapter {model_id!r} answers like the base model after wake-up")
        else:
            problems.append(
                f"{model_id!r} answered {before[model_id]!r} before sleep and {answer!r} after"
            )
    if problems:
        raise RuntimeError(
            "vLLM changed its answers after waking from sleep (see vLLM issue #53888): "
            + "; ".join(problems)
        )
