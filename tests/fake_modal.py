"""A stateful fake of Modal's servers, for tests only: Modal cannot be reached from where tests run.

It keeps what Modal keeps for a deployed app (name, state, numbered versions with tag and git
commit, rollbacks as new versions, stop) in a JSON file, so that three views share one state:

- `FakeModal`, an in-process `Platform` (fast; used by plan/apply tests);
- `install_executable()`, a fake `modal` command on PATH that records its argv and answers
  `modal deploy/app list/app history/app rollback/app stop` with the same `--json` shapes as the
  real CLI (modal 1.6), and `modal app logs NAME --tail N` as it prints them (each entry's text as
  the container wrote it), to test `deployer.deploy.platform.modal_cli` itself;
- `install_sdk()`, a fake `modal` package for the one SDK call (a deployed app's URL);
- `EndpointServer`, an HTTP server on loopback standing in for each app's web endpoint: it answers
  like vLLM's OpenAI server for the models the deployed app file declares, and, for a dynamic app
  (one with a `stage_adapters` function), those staged in its adapters volume, as vLLM's resolver
  would once the container has reloaded the volume. Each model card's `root` is the folder vLLM
  loaded the adapter from; an adapter whose staged copy changed keeps answering from the copy
  loaded before for a request or more (`adapter_reload_lag`), as until a container's watch thread
  has reloaded the volume and unloaded it.

Volumes keep files (`modal volume get/put`): `modal run app.py::stage_adapters` syncs the app's
adapters volume (`<app>-adapters`) to the adapters its ADAPTERS declares, manifest and all, each
version of an adapter in a folder of its own (`<name>@<hash of its label>`), as the runtime does.

Failures are injected into the state: a deploy that Modal refuses, an endpoint that never becomes
healthy, a container whose vLLM exits while starting, one that forgets an adapter, one whose chat
completions fail, one that asks for its key on /v1 only, a web URL that Modal's API reports
somewhere else, logs that cannot be read. Secrets live in the state too: the endpoint asks for the
key its app's Secrets hold. Each app keeps the logs its containers wrote while starting.

As on Modal, a deployed app's URL is what the API answers for it (`web_url`, which stands in for
`modal.Function.from_name(...).get_web_url()`); `modal deploy` prints it after the image's build
log, whose `=> Step N: ENV NAME=value` lines carry the deployment's own text.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import shlex
import subprocess
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from deployer.deploy.platform import DeployedApp, PlatformError, Version  # noqa: E402

STATE_ENV = "FAKE_MODAL_STATE"
# What a dynamic app's stage_adapters writes into each adapter's config, and its resolver accepts:
# the `--model` value its serve function passes.
STAGED_BASE = "/root/base-model"
STAGED_ROOT = "/root/adapters"  # where the adapters volume is mounted
MANIFEST = "deployer-adapters.json"
# "v1-only-auth": the key guards /v1 only, as vLLM's own check does in an app without the middleware
# (one rendered by an older deployer, or by a project template that left it out).
# "start-fails": vLLM exits while the container starts, so the runtime raises VllmStartFailed
# quoting its last lines (START_FAILURE among them), and the endpoint never answers.
BEHAVIOURS = ("ok", "unhealthy", "start-fails", "missing-adapter", "chat-error", "v1-only-auth")
START_FAILURE = (
    "ValueError: LoRA rank 64 is greater than max_lora_rank 16. Please launch the server with a "
    "higher max_lora_rank."
)


class FakeModal:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "state.json"
        self.where = "fake Modal"
        if not self.path.exists():
            self._save(
                {
                    "apps": {},
                    "calls": [],
                    "fail_deploy": {},
                    "behaviour_next": {},
                    "endpoint": "",
                    "secrets": {},
                }
            )

    # -- state -------------------------------------------------------------------------------
    def _load(self) -> dict:
        return json.loads(self.path.read_text())

    def _save(self, state: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.path)

    @contextmanager
    def _state(self):
        with open(self.folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load()
            try:
                yield state
            finally:  # a refused request is recorded too, as Modal's logs would have it
                self._save(state)

    @property
    def state(self) -> dict:
        return self._load()

    # -- the workspace's Secrets (`modal secret create NAME KEY=VALUE...`) ----------------------
    def create_secret(self, name: str, values: dict[str, str]) -> None:
        with self._state() as s:
            s.setdefault("secrets", {})[name] = dict(values)

    # -- injected failures -------------------------------------------------------------------
    def fail_next_deploy(self, name: str, message: str = "Image build failed") -> None:
        with self._state() as s:
            s["fail_deploy"][name] = message

    def next_deploy_behaves(self, name: str, behaviour: str) -> None:
        assert behaviour in BEHAVIOURS
        with self._state() as s:
            s["behaviour_next"][name] = behaviour

    def fail_next_logs(self, message: str = "Deadline exceeded") -> None:
        """The next read of an app's logs fails, as when Modal cannot be reached."""
        with self._state() as s:
            s["fail_logs"] = message

    def deploys(self) -> list[tuple[str, str]]:
        """(app, tag) of every successful deploy, in order (rollbacks are not deploys)."""
        return [
            (c["name"], c["tag"])
            for c in self.state["calls"]
            if c["op"] == "deploy" and c.get("ok")
        ]

    def clear_calls(self) -> None:
        with self._state() as s:
            s["calls"] = []

    # -- the Platform interface --------------------------------------------------------------
    def apps(self) -> list[DeployedApp]:
        state = self.state
        return [
            DeployedApp(name, _version(app["versions"][-1]))
            for name, app in sorted(state["apps"].items())
            if app["state"] == "deployed"
        ]

    def history(self, name: str) -> list[Version]:
        app = self.state["apps"].get(name)
        return [_version(v) for v in reversed(app["versions"])] if app else []

    def web_url_is(self, name: str, url: str) -> None:
        """From now on, Modal's API gives `url` as the web URL of app `name`."""
        with self._state() as s:
            s.setdefault("web_urls", {})[name] = url

    def deploy(self, app_file: Path, name: str, tag: str) -> None:
        source = Path(app_file).read_text(encoding="utf-8")
        try:
            models = _declared_models(source)
        except (SyntaxError, ValueError) as exc:
            self._record("deploy", name=name, tag=tag, ok=False)
            raise PlatformError(
                f"`modal deploy {app_file}` failed (exit 1): cannot import the app: {exc}"
            ) from None
        commit = _commit_of(Path(app_file).parent)
        with self._state() as s:
            s["calls"].append(
                {"op": "deploy", "name": name, "tag": tag, "ok": name not in s["fail_deploy"]}
            )
            if name in s["fail_deploy"]:
                message = s["fail_deploy"].pop(name)
                raise PlatformError(
                    f"`modal deploy {app_file} --name {name} --tag {tag}` failed (exit 1): "
                    f"{message}"
                )
            app = s["apps"].setdefault(name, {"state": "deployed", "versions": []})
            app["state"] = "deployed"
            behaviour = s["behaviour_next"].pop(name, "ok")
            app.setdefault("logs", []).extend(start_logs(behaviour, models))
            app["versions"].append(
                {
                    "number": len(app["versions"]) + 1,
                    "tag": tag,
                    "commit": commit,
                    "models": models,
                    "behaviour": behaviour,
                    "source": source,
                    # what vLLM loads at start, as the runtime labels it
                    "labels": _labels(source, Path(app_file).parent),
                }
            )

    def fail_next_run(self, message: str = "Function download_weights failed") -> None:
        with self._state() as s:
            s["fail_run"] = message

    def run(self, app_file: Path, function: str) -> None:
        source = Path(app_file).read_text(encoding="utf-8")
        name = _app_name(source)
        with self._state() as s:
            s["calls"].append({"op": "run", "name": name, "function": function})
            if f"def {function}(" not in source:
                raise PlatformError(
                    f"`modal run {app_file}::{function}` failed (exit 1): no function "
                    f"{function!r} in the app"
                )
            if message := s.pop("fail_run", None):
                raise PlatformError(
                    f"`modal run {app_file}::{function}` failed (exit 1): {message}"
                )
            if function == "stage_adapters":
                base = s.get("stage_base", {}).pop(name, STAGED_BASE)
                volume = s.setdefault("volumes", {}).setdefault(f"{name}-adapters", {})
                _stage(volume, _labels(source, Path(app_file).parent), base)
                return
            s.setdefault("volume", {}).setdefault("huggingface-cache", []).extend(
                _declared_models(source)
            )

    def next_stage_writes_base(self, name: str, base: str) -> None:
        """The next stage_adapters of app `name` writes `base` into the adapters' configs, so
        the resolver refuses them (its base is the `--model` value, STAGED_BASE)."""
        with self._state() as s:
            s.setdefault("stage_base", {})[name] = base

    def adapter_reload_lag(self, name: str, requests: int | None) -> None:
        """From now on, an adapter of app `name` whose staged copy changed keeps answering from
        the copy vLLM loaded for `requests` more requests naming it (until the container's
        watch thread has reloaded the volume and unloaded it; 1 by default); None: for ever (a
        volume reload that keeps failing)."""
        with self._state() as s:
            s.setdefault("reload_lag", {})[name] = -1 if requests is None else requests

    # -- volumes -----------------------------------------------------------------------------
    def volume_files(self, volume: str) -> dict[str, str]:
        return dict(self.state.get("volumes", {}).get(volume, {}))

    def read_volume_file(self, volume: str, path: str) -> str | None:
        self._record("volume get", volume=volume, path=path)
        return self.state.get("volumes", {}).get(volume, {}).get(path.lstrip("/"))

    def write_volume_file(self, volume: str, path: str, text: str) -> None:
        with self._state() as s:
            s["calls"].append({"op": "volume put", "volume": volume, "path": path})
            if volume not in s.setdefault("volumes", {}):
                raise PlatformError(
                    f"`modal volume put {volume}` failed (exit 1): Volume '{volume}' not found"
                )
            s["volumes"][volume][path.lstrip("/")] = text

    def rollback(self, name: str, version: int | None = None) -> None:
        with self._state() as s:
            s["calls"].append({"op": "rollback", "name": name, "version": version})
            app = s["apps"].get(name)
            if not app or app["state"] != "deployed":
                raise PlatformError(
                    f"`modal app rollback {name}` failed (exit 1): App '{name}' is not deployed."
                )
            versions = app["versions"]
            target = (
                versions[-2]
                if version is None and len(versions) > 1
                else next((v for v in versions if v["number"] == version), None)
            )
            if target is None:
                raise PlatformError(
                    f"`modal app rollback {name}` failed (exit 1): no version to roll back to"
                )
            versions.append({**target, "number": len(versions) + 1})

    def stop(self, name: str) -> None:
        with self._state() as s:
            s["calls"].append({"op": "stop", "name": name})
            app = s["apps"].get(name)
            if not app or app["state"] != "deployed":
                raise PlatformError(
                    f"`modal app stop {name}` failed (exit 1): No App with name '{name}' found."
                )
            app["state"] = "stopped"

    def recent_logs(self, name: str, lines: int) -> list[str]:
        from deployer.deploy.platform.modal_cli import log_lines

        return log_lines(self.logs_printed(name, lines))[-lines:]

    def logs_printed(self, name: str, entries: int) -> str:
        """What `modal app logs NAME --tail ENTRIES` prints: the last entries' text, as written."""
        with self._state() as s:
            s["calls"].append({"op": "logs", "name": name})
            if message := s.pop("fail_logs", None):
                raise PlatformError(f"`modal app logs {name}` failed (exit 1): {message}")
            app = s["apps"].get(name)
            if not app:
                raise PlatformError(
                    f"`modal app logs {name}` failed (exit 1): Could not find a deployed app "
                    f"named '{name}'"
                )
            return "".join(app.get("logs", [])[-entries:])

    def web_url(self, name: str) -> str | None:
        state = self.state
        app = state["apps"].get(name)
        return self._url(state, name) if app and app["state"] == "deployed" else None

    def _record(self, op: str, **fields) -> None:
        with self._state() as s:
            s["calls"].append({"op": op, **fields})

    @staticmethod
    def _url(state: dict, name: str) -> str:
        if url := state.get("web_urls", {}).get(name):
            return url
        return f"{state['endpoint'] or 'https://fake-workspace--unserved.modal.run'}/{name}"

    # -- the endpoints -----------------------------------------------------------------------
    def current(self, name: str) -> dict | None:
        app = self.state["apps"].get(name)
        return app["versions"][-1] if app and app["state"] == "deployed" else None


def _version(v: dict) -> Version:
    return Version(v["number"], v["tag"], v["commit"])


def start_logs(behaviour: str, models: list[str]) -> list[str]:
    """The log entries a new version's container writes while it starts: the runtime's line,
    vLLM's own (a progress bar redrawn with carriage returns among them), and for "start-fails"
    vLLM's error, then the runtime's VllmStartFailed quoting vLLM's last lines, as Modal records
    an exception that fails a container's start."""
    started = [
        "Starting vLLM: python -m vllm.entrypoints.openai.api_server --model "
        f"{models[0]} --port 8000\n",
        "INFO 11-28 10:00:01 [api_server.py:1885] vLLM API server version 0.11.2\n",
        "Loading safetensors checkpoint shards:   0% Completed | 0/1\r"
        "Loading safetensors checkpoint shards: 100% Completed | 1/1\r",
        "\n",
    ]
    if behaviour == "unhealthy":
        return [*started, "waiting for vLLM's /health (10 s of 600 s): GET /health answered 503\n"]
    if behaviour != "start-fails":
        return [*started, "INFO:     Application startup complete.\n"]
    vllm_tail = [
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.12/site-packages/vllm/lora/models.py", line 412, in '
        "_create_lora_modules",
        START_FAILURE,
    ]
    return [
        *started,
        "\n".join(vllm_tail) + "\n",
        "Traceback (most recent call last):\n"
        '  File "/root/app.py", line 149, in serve\n'
        "    runtime.wait_until_healthy(process, VLLM_PORT, timeout=600)\n"
        "deployer_runtime.VllmStartFailed: vLLM exited with code 1 while starting; vLLM's last "
        "lines:\n" + "\n".join(vllm_tail) + "\n",
    ]


# CPython 3.11 builds AST objects with interpreter-wide recursion bookkeeping that two threads can
# corrupt ("AST constructor recursion depth mismatch", python/cpython#106905): the endpoint's handler
# threads parse app files at the same time, so they take turns.
_AST_LOCK = threading.Lock()


def _parse(source: str) -> ast.Module:
    with _AST_LOCK:
        return ast.parse(source)


def _declared_models(source: str) -> list[str]:
    """The model ids a rendered app serves, read from its constants as Modal's import would see them."""
    tree = _parse(source)
    values = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            if node.targets[0].id in ("SERVED_MODEL_NAME", "ADAPTERS"):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    if "SERVED_MODEL_NAME" not in values:
        raise ValueError("no SERVED_MODEL_NAME in the app")
    return [values["SERVED_MODEL_NAME"], *values.get("ADAPTERS", {})]


def _constant(source: str, name: str):
    """The literal value of a top-level constant of the app (None if it has none)."""
    for node in _parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == name:
            return ast.literal_eval(node.value)
    return None


def _labels(source: str, app_dir: Path) -> dict[str, str]:
    """name → the label the runtime's adapter_sources gives each adapter of the app: the Hub
    repo at its commit, or the container folder with a digest of the local folder's files."""
    adapters = _constant(source, "ADAPTERS") or {}
    local = _constant(source, "LOCAL_FOLDERS") or {}
    labels = {}
    for name, spec in adapters.items():
        if "repo" in spec:
            labels[name] = f"{spec['repo']}@{spec.get('revision')}"
        else:
            folder = app_dir / local.get(spec.get("folder"), "missing")
            digest = hashlib.sha256()
            for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
                if path.is_file() and not path.name.startswith("."):
                    digest.update(f"{path.relative_to(folder)}\0".encode() + path.read_bytes())
            labels[name] = f"path:{spec.get('folder')}@sha256:{digest.hexdigest()[:16]}"
    return labels


def staged_folder_name(name: str, label: str) -> str:
    """The folder the runtime stages version `label` of adapter `name` into."""
    return f"{name}@{hashlib.sha256(label.encode()).hexdigest()[:12]}"


def _stage(volume: dict[str, str], wanted: dict[str, str], base: str) -> None:
    """What the runtime's sync_adapters does to the folder (`wanted`: name → label): stage what
    is missing or changed into a folder of its own for that label (its config's base
    rewritten), remove other versions, unstage what is not wanted, the manifest last."""
    manifest = json.loads(volume.get(MANIFEST, '{"adapters": {}}'))["adapters"]

    def remove_versions(name: str, keep: str | None = None) -> None:
        for path in [p for p in volume if p.startswith(f"{name}@")]:
            if path.split("/", 1)[0] != keep:
                del volume[path]

    for name in [n for n in manifest if n not in wanted]:
        del manifest[name]
        remove_versions(name)
    for name, label in wanted.items():
        if manifest.get(name, {}).get("source") != label or manifest[name]["base"] != base:
            folder = staged_folder_name(name, label)
            volume[f"{folder}/adapter_config.json"] = json.dumps(
                {"base_model_name_or_path": base, "r": 8, "source": label}
            )
            manifest[name] = {
                "source": label,
                "base": base,
                "folder": folder,
                "staged_at": "2026-11-28T10:00:00Z",
            }
            remove_versions(name, keep=folder)
    volume[MANIFEST] = json.dumps({"adapters": manifest})


def staged_models(version: dict, volumes: dict) -> list[str]:
    """The adapters a dynamic app's resolver serves: listed in its volume's manifest, with the
    base its `--model` value (as vLLM's resolver compares them); [] for a static app."""
    return list(staged_entries(version, volumes))


def staged_entries(version: dict, volumes: dict) -> dict[str, dict]:
    """name → manifest entry of each adapter of `staged_models`."""
    if "def stage_adapters(" not in version["source"]:
        return {}
    name = _app_name(version["source"])
    volume = volumes.get(f"{name}-adapters", {})
    manifest = json.loads(volume.get(MANIFEST, '{"adapters": {}}'))["adapters"]
    return {n: entry for n, entry in manifest.items() if entry.get("base") == STAGED_BASE}


def _static_root(source: str, name: str) -> str:
    """Where vLLM loaded adapter `name` of the app from at start (`--lora-modules`)."""
    spec = (_constant(source, "ADAPTERS") or {}).get(name, {})
    if "repo" in spec:
        return f"/root/.cache/huggingface/{spec['repo']}@{spec.get('revision')}"
    return spec.get("folder", f"/root/sources/adapters/{name}")


def _image_env(source: str) -> dict[str, str]:
    """The variables an app sets with `Image.env({...})`, each a step of its image build."""
    found: dict[str, str] = {}
    for node in ast.walk(_parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "env"
            and node.args
            and isinstance(node.args[0], ast.Dict)
        ):
            try:
                found.update(ast.literal_eval(node.args[0]))
            except ValueError:  # not literal values: Modal would evaluate them, the fake skips them
                pass
    return found


def build_log(source: str) -> str:
    """What Modal prints while it builds the app's image: a `=> Step N:` line per Dockerfile command
    (`Image.env` becomes `ENV NAME=value`, the value shell-quoted, as modal 1.6 writes it)."""
    steps = ["FROM base", *(f"ENV {k}={shlex.quote(v)}" for k, v in _image_env(source).items())]
    if len(steps) == 1:
        return ""
    lines = [f"=> Step {i}: {step}" for i, step in enumerate(steps)]
    return "Building image im-fake0001\n\n" + "\n".join(lines) + "\nBuilt image im-fake0001\n"


def _app_name(source: str) -> str:
    for node in _parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "APP_NAME":
            return ast.literal_eval(node.value)
    return "?"


def _commit_of(folder: Path) -> str:
    """What Modal records: the checkout's commit, marked * when it has uncommitted changes."""

    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return ""
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    return head.stdout.strip()[:7] + ("*" if dirty else "")


def _secret_names(source: str) -> list[str]:
    """The Modal Secrets an app attaches: `modal.Secret.from_name("NAME")` calls."""
    return [
        node.args[0].value
        for node in ast.walk(_parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "from_name"
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "Secret"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


def refusal(version: dict, secrets: dict, path: str, headers) -> tuple[int, dict] | None:
    """What stops a request before vLLM's routes, as on Modal: proxy auth (Modal checks the
    Modal-Key/Modal-Secret headers on every route; this fake has no token store, so any pair
    passes), then the key from the app's Secrets: the app's middleware (`--middleware
    deployer_auth_guard.RequireApiKey` in its flags) asks for it on all but /health; an app without
    it (an older deployer's, which handed vLLM the key) has only vLLM's own check, on /v1."""
    source = version["source"]
    if "requires_proxy_auth=True" in source and not (
        headers.get("Modal-Key") and headers.get("Modal-Secret")
    ):
        return 401, {"error": "modal-http: missing credentials for proxy authorization"}
    environment = {k: v for name in _secret_names(source) for k, v in secrets.get(name, {}).items()}
    key = environment.get("VLLM_API_KEY")
    guard = (
        '"deployer_auth_guard.RequireApiKey"' in source and version["behaviour"] != "v1-only-auth"
    )
    if guard and not key:
        return 503, {"error": "modal-http: the app failed to start (VLLM_API_KEY is not set)"}
    guarded = (
        path != "/health" if guard else path.startswith(("/v1", "/v2", "/inference", "/cohere"))
    )
    if key and guarded and headers.get("Authorization") != f"Bearer {key}":
        return 401, {"error": "Unauthorized"}
    return None


class EndpointServer:
    """Every deployed app's web endpoint, at http://127.0.0.1:PORT/<app>: answers like vLLM would,
    and asks for the credentials the app's auth would (see `refusal`)."""

    def __init__(self, fake: FakeModal):
        self.fake = fake
        fake_ref = fake
        # (app@version, adapter) → the folder vLLM loaded it from (the `root` of its model card):
        # those loaded at start, and those the resolver loaded on a first request, which vLLM
        # lists in /v1/models from then on, until its containers restart (a new version).
        self.loaded: dict[tuple[str, str], str] = {}
        # (app@version, adapter) → requests it still answers from its earlier copy, once its
        # staged copy changed: the container unloads it only after its next volume reload.
        self.stale: dict[tuple[str, str], int] = {}
        loaded, stale = self.loaded, self.stale
        name_of = lambda version: f"{_app_name(version['source'])}@{version['number']}"  # noqa: E731

        def root_of(version, model: str, entries: dict) -> str | None:
            """The folder vLLM answers `model` from (None: not served), and with it, what the
            container loaded and unloaded by now."""
            key = (name_of(version), model)
            static = model in version["models"][1:]
            at_start = _static_root(version["source"], model) if static else None
            entry = entries.get(model)
            if static and (
                entry is None or entry["source"] == version.get("labels", {}).get(model)
            ):
                wanted = at_start
            elif entry is not None:
                wanted = f"{STAGED_ROOT}/{entry['folder']}"
            else:
                return None
            have = loaded.get(key, at_start)
            if have is not None and have != wanted:
                lags = fake_ref.state.get("reload_lag", {})
                left = stale.get(key, lags.get(_app_name(version["source"]), 1))
                if left != 0:  # the watch thread has not unloaded it yet
                    stale[key] = left - 1 if left > 0 else left
                    return have
                stale.pop(key, None)
            loaded[key] = wanted
            return wanted

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                _, name, *rest = self.path.split("/", 2) + [""]
                version = fake_ref.current(name)
                return version, "/" + (rest[0] if rest else "")

            def _staged(self, version) -> list[str]:
                return staged_models(version, fake_ref.state.get("volumes", {}))

            def _refused(self, version, path) -> bool:
                refused = refusal(version, fake_ref.state.get("secrets", {}), path, self.headers)
                if refused:
                    self._reply(*refused)
                return refused is not None

            def do_GET(self):
                version, path = self._route()
                if version is None:
                    return self._reply(404, {"error": "modal-http: app not found"})
                if version["behaviour"] == "start-fails":
                    return self._reply(503, {"error": "modal-http: the app failed to start"})
                if self._refused(version, path):
                    return
                if version["behaviour"] == "unhealthy":
                    return self._reply(503, {"error": "starting"})
                if path == "/health":
                    return self._reply(200, {})
                if path == "/v1/models":
                    models = (
                        version["models"]
                        if version["behaviour"] != "missing-adapter"
                        else version["models"][:1]
                    )
                    # vLLM lists an adapter its resolver loaded only once a request asked for it.
                    models = models + [
                        m
                        for m in self._staged(version)
                        if (name_of(version), m) in loaded and m not in models
                    ]
                    base = models[0]
                    roots = {
                        m: loaded.get((name_of(version), m), _static_root(version["source"], m))
                        for m in models[1:]
                    }
                    return self._reply(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {
                                    "id": m,
                                    "object": "model",
                                    "root": roots.get(m, STAGED_BASE),
                                    "parent": None if m == base else base,
                                }
                                for m in models
                            ],
                        },
                    )
                return self._reply(404, {"error": "not found"})

            def do_POST(self):
                version, path = self._route()
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if version is None:
                    return self._reply(404, {"error": "modal-http: app not found"})
                if version["behaviour"] == "start-fails":
                    return self._reply(503, {"error": "modal-http: the app failed to start"})
                if self._refused(version, path):
                    return
                served = version["models"] + self._staged(version)
                if path == "/tokenize" and body.get("model") in served:
                    return self._reply(200, {"count": 1, "max_model_len": 4096, "tokens": [6023]})
                if path != "/v1/chat/completions":
                    return self._reply(404, {"error": "not found"})
                if version["behaviour"] == "chat-error":
                    return self._reply(
                        500, {"error": {"message": "CUDA error: an illegal memory access"}}
                    )
                model = body.get("model")
                entries = staged_entries(version, fake_ref.state.get("volumes", {}))
                if model not in served or (
                    model != version["models"][0] and root_of(version, model, entries) is None
                ):
                    return self._reply(
                        404, {"error": {"message": f"The model `{model}` does not exist."}}
                    )
                return self._reply(
                    200,
                    {
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "e2e4"},
                                "finish_reason": "stop",
                            }
                        ],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        with self.fake._state() as s:
            s["endpoint"] = self.url
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# -- the fake `modal` executable -----------------------------------------------------------------


def install_executable(bin_dir: Path, state_folder: Path) -> Path:
    """Write `bin_dir/modal`, a fake Modal CLI sharing `state_folder` with a FakeModal."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / "modal"
    exe.write_text(
        f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, "
        f"{str(HERE)!r})\nos.environ.setdefault({STATE_ENV!r}, "
        f"{str(state_folder)!r})\nfrom fake_modal import "
        "main\nsys.exit(main(sys.argv[1:]))\n"
    )
    exe.chmod(0o755)
    return exe


# The SDK calls `ModalCli.web_url` makes (in a subprocess), answered from the fake's state. Lookups
# are lazy in the real SDK too: a missing app or function raises NotFoundError when it is used.
_SDK = """\
import os, sys
sys.path.insert(0, {here!r})
os.environ.setdefault({state_env!r}, {state!r})
from pathlib import Path
from fake_modal import FakeModal
from . import exception


class _Function:
    def __init__(self, app, name, environment_name):
        self.app, self.name, self.environment = app, name, environment_name

    def get_web_url(self):
        fake = FakeModal(Path(os.environ[{state_env!r}]))
        url = fake.web_url(self.app) if self.environment in (None, "main") else None
        if url is None or self.name != "serve":
            raise exception.NotFoundError(
                f"Lookup failed for Function '{{self.name}}' from the '{{self.app}}' app"
            )
        return url


class Function:
    @staticmethod
    def from_name(app, name, environment_name=None):
        return _Function(app, name, environment_name)


class Cls:
    @staticmethod
    def from_name(app, name, environment_name=None):
        raise exception.NotFoundError(f"Lookup failed for Cls '{{name}}' from the '{{app}}' app")
"""


def install_sdk(bin_dir: Path, state_folder: Path) -> Path:
    """Write a fake `modal` package answering from `state_folder`, and `bin_dir/python-fake-sdk`, a
    Python that imports it first: what `deployer.deploy.platform.modal_cli.sdk_python` runs."""
    package = state_folder / "sdk" / "modal"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(
        _SDK.format(here=str(HERE), state_env=STATE_ENV, state=str(state_folder))
    )
    (package / "exception.py").write_text("class NotFoundError(Exception):\n    pass\n")
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = bin_dir / "python-fake-sdk"
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(package.parent))} exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    return python


def main(argv: list[str]) -> int:
    fake = FakeModal(Path(os.environ[STATE_ENV]))
    with fake._state() as s:
        s.setdefault("argv", []).append(argv)
        s.setdefault("cwd", []).append(os.getcwd())  # the real CLI imports from there first
    args = list(argv)
    env = None
    if (
        args[:1] == ["run"]
        and "--env" in args
        and any("::" in a for a in args[: args.index("--env")])
    ):
        print(
            "Error: No such option '--env'.", file=sys.stderr
        )  # modal 1.6 hands it to the function
        return 2
    if "--env" in args:
        i = args.index("--env")
        env = args[i + 1]
        del args[i : i + 2]
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if env not in (None, "main"):
        print(f"Environment '{env}' not found", file=sys.stderr)
        return 1
    try:
        if args[:1] == ["deploy"]:
            app_file, name, tag = (
                args[1],
                args[args.index("--name") + 1],
                args[args.index("--tag") + 1],
            )
            fake.deploy(Path(app_file), name, tag)
            url = fake.web_url(name)
            print(
                build_log(Path(app_file).read_text(encoding="utf-8"))
                + f"✓ Created objects.\n├── 🔨 Created mount {app_file}\n└── 🔨 Created web "
                f"function serve =>\n    {url}\n✓ App deployed in 1.234s! 🎉\n\nView "
                f"Deployment: https://modal.com/apps/fake-workspace/main/deployed/{name}"
            )
        elif args[:1] == ["run"]:
            app_file, function = args[1].split("::")
            fake.run(Path(app_file), function)
            print("✓ App completed. View run at https://modal.com/apps/fake-workspace/main/ap-run")
        elif args[:2] == ["app", "list"]:
            rows = [
                {
                    "app_id": f"ap-{n}",
                    "description": n,
                    "state": a["state"],
                    "tasks": "0",
                    "created_at": "2026-11-28T10:00:00+00:00",
                    "stopped_at": None,
                }
                for n, a in fake.state["apps"].items()
            ]
            print(json.dumps(rows) if as_json else "\n".join(r["description"] for r in rows))
        elif args[:2] == ["app", "history"]:
            if not fake.history(args[2]):
                print(
                    f"No App with name '{args[2]}' found in the 'main' environment.",
                    file=sys.stderr,
                )
                return 1
            rows = [
                {
                    "version": f"v{v.number}",
                    "time_deployed": "2026-11-28T10:00:00+00:00",
                    "client": "1.6.4",
                    "deployed_by": "ci",
                    "commit": v.commit or None,
                    **({"tag": v.tag or None}),
                }
                for v in fake.history(args[2])
            ]
            print(json.dumps(rows))
        elif args[:2] == ["app", "logs"]:
            tail = next((args[i + 1] for i, a in enumerate(args) if a in ("-n", "--tail")), "100")
            sys.stdout.write(fake.logs_printed(args[2], int(tail)))
        elif args[:2] == ["app", "rollback"]:
            version = int(args[3][1:]) if len(args) > 3 else None
            fake.rollback(args[2], version)
            print("✓ Deployment rollback successful!")
        elif args[:2] == ["app", "stop"]:
            fake.stop(args[2])
        elif args[:2] == ["volume", "get"]:  # modal volume get VOLUME PATH [DEST] [--force]
            force = "--force" in args
            volume, path, *dest = [a for a in args[2:] if a != "--force"]
            if volume not in fake.state.get("volumes", {}):
                print(f"Volume '{volume}' not found in environment 'main'", file=sys.stderr)
                return 1
            text = fake.read_volume_file(volume, path)
            if text is None:
                print(f"No such file or directory: {path}", file=sys.stderr)
                return 1
            target = Path(dest[0] if dest else Path(path).name)
            if str(target) == "-":
                sys.stdout.write(text)
                return 0
            if target.exists() and not force:
                print(f"Output path '{target}' already exists. Use --force", file=sys.stderr)
                return 1
            target.write_text(text)
            print("✓ Finished downloading files to local!")
        elif args[:2] == ["volume", "put"]:  # modal volume put VOLUME LOCAL [REMOTE] [--force]
            volume, local, *remote = [a for a in args[2:] if a not in ("--force", "-f")]
            path = remote[0] if remote else "/"
            path = path + Path(local).name if path.endswith("/") else path
            existing = fake.state.get("volumes", {}).get(volume, {})
            if path.lstrip("/") in existing and not ({"--force", "-f"} & set(args)):
                print(f"{path}: already exists (use --force)", file=sys.stderr)
                return 1
            fake.write_volume_file(volume, path, Path(local).read_text())
            print(f"✓ Uploaded file '{local}' to '{path}'")
        else:
            print(f"fake modal: unsupported command {argv}", file=sys.stderr)
            return 2
    except PlatformError as exc:
        print(str(exc).split(": ", 1)[-1], file=sys.stderr)
        return 1
    return 0
