"""What a rendered app does besides laying out its Modal functions: fetch the weights, keep
credentials out of vLLM's process, guard every route with the API key, start vLLM and wait for it
to be up (failing at once with its own words if it cannot start), check it after a snapshot, and
stage adapters for a deployment that loads them dynamically.

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
import shutil
import stat
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


def local_request(
    port: int, method: str, path: str, body: dict | None = None, headers: dict | None = None
):
    """Send a request to vLLM on this container, with the API key if there is one (and any other
    `headers`); its JSON answer (None if empty, or not JSON)."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if os.environ.get("VLLM_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["VLLM_API_KEY"]
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    with _loopback.open(request, timeout=120) as response:
        answer = response.read()
    try:
        return json.loads(answer) if answer.strip() else None
    except ValueError:  # vLLM answers some routes (unloading an adapter) in plain text
        return None


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


# ## Adapters added while vLLM runs (adapter_loading: dynamic)

# vLLM's own resolver plugin joins a requested name onto its folder as it is (`../x` escapes it),
# so the app gives vLLM ours, written beside this file by the deployer, and nothing else: vLLM
# finds plugins through their distribution's entry points, so a dist-info naming `register`
# goes beside it. VLLM_PLUGINS names it alone.
RESOLVER_MODULE = "deployer_lora_resolver"
RESOLVER_DIST_INFO = {
    "METADATA": "Metadata-Version: 2.1\nName: deployer-lora-resolver\nVersion: 0\n",
    "entry_points.txt": f"[vllm.general_plugins]\n{RESOLVER_MODULE} = {RESOLVER_MODULE}:register\n",
}
# Where the resolver finds staged adapters, and the digest with which the adapter routes
# middleware lets this process (and only it) unload an adapter whose staged copy changed.
ADAPTER_FOLDER_VARIABLE = "DEPLOYER_ADAPTER_FOLDER"
UNLOAD_DIGEST_VARIABLE = "DEPLOYER_UNLOAD_DIGEST"
UNLOAD_TOKEN_HEADER = "X-Deployer-Unload-Token"
# The adapter folder holds one folder per adapter, named as the adapter, and this manifest of
# them, written last: the resolver serves only the names it lists.
MANIFEST_FILE = "deployer-adapters.json"
ADAPTER_FOLDER_FILES = (MANIFEST_FILE, "deployer-state.json")
STAGED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ADAPTER_CONFIG = "adapter_config.json"
# Folders and files being written, or set aside to be removed: hidden, so never a served name.
STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"
MANIFEST_TEMP_PREFIX = ".manifest-"


def with_dynamic_adapters(environment: dict, folder: str, adapter_folder: str) -> tuple:
    """(`environment` for vLLM to load staged adapters on first use, the unload token).

    Writes the resolver plugin and the adapter routes middleware into `folder`, put first on vLLM's
    import path; turns on runtime LoRA updating with our resolver alone. vLLM gets only the salted
    digest of the token: the token stays in this process, for `unload_adapter`."""
    here = Path(__file__).parent
    for name in (AUTH_GUARD_FILE, f"{RESOLVER_MODULE}.py"):
        Path(folder, name).write_bytes((here / name).read_bytes())
    dist_info = Path(folder, f"{RESOLVER_MODULE}-0.dist-info")
    dist_info.mkdir(exist_ok=True)
    for name, text in RESOLVER_DIST_INFO.items():
        (dist_info / name).write_text(text)
    token = secrets.token_hex(32)
    salt = secrets.token_bytes(16)
    digest = salt.hex() + ":" + hashlib.sha256(salt + token.encode()).hexdigest()
    path = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    return {
        **environment,
        "PYTHONPATH": os.pathsep.join([folder, *(entry for entry in path if entry != folder)]),
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true",
        "VLLM_PLUGINS": RESOLVER_MODULE,
        ADAPTER_FOLDER_VARIABLE: adapter_folder,
        UNLOAD_DIGEST_VARIABLE: digest,
    }, token


def linked_model(model: str, link: str) -> str:
    """`link`, made (atomically) a symbolic link to the model folder `model`: vLLM's `--model` is
    what a staged adapter's base_model_name_or_path must equal, so it must not depend on where
    the weights were downloaded."""
    temporary = f"{link}.{secrets.token_hex(4)}"
    os.symlink(model, temporary)
    os.replace(temporary, link)
    return link


def adapter_sources(adapters: dict, local_folders: dict, *, here: Path | None = None) -> dict:
    """Each adapter's folder, downloaded first, and a label that changes with what it holds:
    name → (folder, "repo@commit" or "path:<folder>@sha256:<digest of its files>")."""
    from huggingface_hub import snapshot_download

    sources = {}
    for name, source in adapters.items():
        if "repo" in source:
            folder = snapshot_download(source["repo"], revision=source["revision"])
        elif here is not None:
            folder = str((here / local_folders[source["folder"]]).resolve())
        else:
            folder = source["folder"]
        sources[name] = (folder, adapter_label(source, folder))
    return sources


def adapter_label(source: dict, folder: str) -> str:
    """What the manifest records of where an adapter came from: it changes when its files do. A
    Hub snapshot's folder is named after its commit."""
    if "repo" in source:
        return f"{source['repo']}@{Path(folder).name}"
    return f"path:{source['folder']}@sha256:{_files_digest(folder)}"


def adapter_labels(adapters: dict, adapter_folders: dict) -> dict:
    """The label of each adapter vLLM loaded at start (`weights()`'s folders): compared with the
    staged copies, an adapter updated since the deploy is unloaded, to load its staged copy."""
    return {name: adapter_label(adapters[name], folder) for name, folder in adapter_folders.items()}


def _files_digest(folder: str) -> str:
    digest = hashlib.sha256()
    for path, relative in _adapter_files(Path(folder)):
        digest.update(f"{relative}\0".encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def read_manifest(folder: str) -> dict:
    """The staged adapters: name → {"source", "base", "folder", "staged_at"} ({} if none or
    unreadable)."""
    try:
        manifest = json.loads(Path(folder, MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    adapters = manifest.get("adapters") if isinstance(manifest, dict) else None
    return dict(adapters) if isinstance(adapters, dict) else {}


def _write_manifest(folder: Path, adapters: dict) -> None:
    """Atomically: the resolver reads either the old manifest or the new one, never a part."""
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=MANIFEST_TEMP_PREFIX, suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"adapters": adapters}, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, folder / MANIFEST_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not STAGED_NAME.fullmatch(name) or name in ADAPTER_FOLDER_FILES:
        raise ValueError(f"{name!r} cannot be a staged adapter's name (a folder of its own)")


def _link_boundary(source: Path) -> Path:
    """What links in `source` may lead into: the folder itself, or for a Hub snapshot (whose files
    are links into its repo's blobs/ folder) the repo's folder in the cache."""
    real = Path(os.path.realpath(source))
    if real.parent.name == "snapshots" and (real.parent.parent / "blobs").is_dir():
        return real.parent.parent
    return real


def _adapter_files(source: Path) -> list:
    """(file to read, path relative to `source`) of every file of an adapter folder, hidden ones
    (.git, .cache) left out. A link is followed only into `_link_boundary(source)`: an adapter
    staged from a folder cannot carry a file from elsewhere on the machine."""
    boundary = _link_boundary(source)
    found = []
    for folder, folders, files in os.walk(source):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in folders:
            if os.path.islink(os.path.join(folder, name)):
                raise ValueError(f"{os.path.join(folder, name)} is a link to a folder")
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            real = Path(os.path.realpath(path))
            if real != boundary and boundary not in real.parents:
                raise ValueError(f"{path} is a link out of {source}")
            if not stat.S_ISREG(os.stat(real).st_mode):
                raise ValueError(f"{path} is not a plain file")
            found.append((real, os.path.relpath(path, source)))
    return found


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def staged_folder_name(name: str, label: str) -> str:
    """The folder one version of adapter `name` is staged into: its own for each label. vLLM keys
    its prefix cache by an adapter's name and folder, so a new version in the old folder would be
    served cached results of the old weights. `@` is in no adapter name: no clash with another's."""
    return f"{name}@{hashlib.sha256(label.encode()).hexdigest()[:12]}"


def stage_adapter(
    folder: str, name: str, source_folder: str, base_model: str, source_label: str
) -> None:
    """Copy the adapter in `source_folder` into `<folder>/<name>@<hash of its label>`, its
    base_model_name_or_path rewritten to `base_model` (vLLM's `--model`, which the resolver
    compares it with), then point the manifest at it and remove the adapter's older versions.
    Copied into a hidden folder first and renamed into place: the resolver never sees a part of
    an adapter, and reads the old version until the manifest names the new one."""
    _check_name(name)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    source = Path(source_folder)
    if not (source / ADAPTER_CONFIG).is_file():
        raise ValueError(f"{source} holds no {ADAPTER_CONFIG}")
    version = staged_folder_name(name, source_label)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=root))
    try:
        for path, relative in _adapter_files(source):
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / relative)
        config = json.loads((staging / ADAPTER_CONFIG).read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError(f"{source / ADAPTER_CONFIG} is not a JSON object")
        config["base_model_name_or_path"] = base_model
        (staging / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would keep another user's vLLM out
        target = root / version
        aside = None
        if target.exists() or target.is_symlink():  # the same version, staged again
            aside = root / f"{REPLACED_PREFIX}{name}-{secrets.token_hex(4)}"
            os.rename(target, aside)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if aside is not None:
        _remove(aside)
    adapters = read_manifest(folder)
    adapters[name] = {
        "source": source_label,
        "base": base_model,
        "folder": version,
        "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_manifest(root, adapters)
    _remove_versions(root, name, keep=version)


def _remove_versions(root: Path, name: str, keep: str | None = None) -> None:
    """Every staged version of adapter `name` but `keep`: vLLM has the one it loaded in memory,
    and the resolver reads only the manifest's."""
    for entry in root.iterdir():
        if entry.name.startswith(f"{name}@") and entry.name != keep:
            aside = root / f"{REPLACED_PREFIX}{name}-{secrets.token_hex(4)}"
            os.rename(entry, aside)
            _remove(aside)


def unstage_adapter(folder: str, name: str) -> None:
    """Take adapter `name` out of the manifest (the resolver stops serving it), then its folders."""
    _check_name(name)
    root = Path(folder)
    adapters = read_manifest(folder)
    if adapters.pop(name, None) is not None:
        _write_manifest(root, adapters)
    _remove_versions(root, name)


def staged_path(folder: str, entry) -> Path | None:
    """The folder a manifest entry names, if it is one staging makes (`<name>@<hash>`)."""
    version = entry.get("folder") if isinstance(entry, dict) else None
    if not isinstance(version, str) or "/" in version or version.startswith("."):
        return None
    return Path(folder, version)


def sync_adapters(folder: str, wanted: dict, base_model: str) -> dict:
    """Make the staged adapters those of `wanted` (name → (source folder, label)): stage what is
    missing, or whose label or base changed; unstage what is not wanted. Doing it again changes
    nothing. Returns {"staged": [names], "unstaged": [names]}."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():  # left by a run that stopped half-way
        if entry.name.startswith((STAGING_PREFIX, REPLACED_PREFIX, MANIFEST_TEMP_PREFIX)):
            _remove(entry)
    current = read_manifest(folder)
    staged, unstaged = [], []
    for name, (source_folder, label) in sorted(wanted.items()):
        entry = current.get(name)
        path = staged_path(folder, entry)
        if (
            path is not None
            and entry.get("source") == label
            and entry.get("base") == base_model
            and path.name == staged_folder_name(name, label)
            and (path / ADAPTER_CONFIG).is_file()
        ):
            continue
        stage_adapter(folder, name, source_folder, base_model, label)
        staged.append(name)
    for name in sorted(current):
        if name not in wanted:
            unstage_adapter(folder, name)
            unstaged.append(name)
    return {"staged": staged, "unstaged": unstaged}


def unload_adapter(port: int, name: str, token: str) -> None:
    """Have vLLM forget adapter `name`, so that its next request loads the staged copy again (or
    none): through the adapter routes middleware, which lets only this token by."""
    try:
        local_request(
            port,
            "POST",
            "/v1/unload_lora_adapter",
            {"lora_name": name},
            headers={UNLOAD_TOKEN_HEADER: token},
        )
    except urllib.error.HTTPError as exc:
        if exc.code != 404:  # 404: vLLM had not loaded it, which is as good
            raise


def changed_adapters(before: dict, after: dict) -> list:
    """Names of `before` (name → label) whose staged copy in manifest `after` has another label,
    or is gone."""
    return sorted(
        name
        for name, label in before.items()
        if not isinstance(after.get(name), dict) or after[name].get("source") != label
    )


def watch_staged_adapters(
    folder: str, reload, port: int, token: str, interval: float, loaded: dict
) -> threading.Thread:
    """A daemon thread: at once, then every `interval` s after `reload()` (a Modal volume's, to see
    new commits), unload from vLLM each adapter whose staged copy changed or was removed since it
    was loaded, so its next request loads the staged copy (or none). `loaded`: the labels of the
    adapters vLLM loaded at start (`adapter_labels`). New adapters need nothing: vLLM asks the
    resolver on their first request. A failed reload (Modal refuses while files of the volume are
    open) or unload is tried again next round, and said once."""

    def watch() -> None:
        staged = read_manifest(folder)
        known = {
            name: entry.get("source") for name, entry in staged.items() if isinstance(entry, dict)
        }
        known.update(loaded)
        said = set()
        first = True
        while True:
            if not first:
                time.sleep(interval)
                try:
                    reload()
                except Exception as exc:
                    if "reload" not in said:
                        print(f"adapter folder not reloaded, trying again: {exc}", flush=True)
                        said.add("reload")
                    continue
            first = False
            current = read_manifest(folder)
            for name in changed_adapters(known, current):
                try:
                    unload_adapter(port, name, token)
                except (OSError, http.client.HTTPException) as exc:
                    if name not in said:
                        print(f"adapter {name} not unloaded, trying again: {exc}", flush=True)
                        said.add(name)
                    current[name] = {"source": known[name]}  # still differs next round
                    continue
                print(f"adapter {name} changed: vLLM loads the new copy on use", flush=True)
            known = {n: e.get("source") for n, e in current.items() if isinstance(e, dict)}

    thread = threading.Thread(target=watch, name="staged-adapters", daemon=True)
    thread.start()
    return thread
