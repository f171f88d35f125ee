"""The real platform: Modal's own command line, run as a subprocess.

The CLI is Modal's stable, documented surface (`--json` output, exit codes), and running it as a
subprocess keeps `modal` out of our process: its import alone costs more than our whole `plan`.
Only `web_url` uses the SDK (in a subprocess too): no CLI command reports a deployed app's URL,
and `modal deploy`'s output mixes the URL with build logs that carry the image's own text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deployer.core.limits import (
    DEPLOY_TIMEOUT,
    LIST_TIMEOUT,
    LOGS_TIMEOUT,
    MAX_STATE_FILE_BYTES,
    URL_TIMEOUT,
    VOLUME_FILE_TIMEOUT,
)
from deployer.deploy.platform import DeployedApp, PlatformError, Version

SERVE_FUNCTION = "serve"  # the web function's name in the rendered app
TAIL_LINES = 12  # of Modal's output, quoted in an error
# How `modal volume get` says the volume or the file is not there (the server's NotFoundError).
_NOT_FOUND = re.compile(r"not found|no such file|does not exist", re.IGNORECASE)
# What `modal app logs` adds to the text containers wrote: colour codes (for a terminal, or when
# FORCE_COLOR asks) and a cursor-up before the line after one a carriage return ended.
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def has_credentials(environ=os.environ) -> bool:
    """Whether the `modal` CLI would find a token (environment or ~/.modal.toml); no network."""
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return True
    config = Path(environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")
    try:
        return "token_id" in config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def modal_executable() -> list[str]:
    """`modal` on PATH (what the user runs), else the one installed beside this Python."""
    found = shutil.which("modal")
    return [found] if found else [sys.executable, "-P", "-m", "modal"]  # -P: see sdk_python


def sdk_python() -> list[str]:
    """The interpreter that asks the Modal SDK for a URL: this one, with the SDK installed beside us.
    -P: without it the working folder (the repository) comes first on the import path, and a
    committed modal.py would run there, with the Modal token in the environment."""
    return [sys.executable, "-P"]


class ModalCli:
    def __init__(self, environment: str | None = None, executable: list[str] | None = None):
        self.environment = environment
        self.executable = executable or modal_executable()
        self.url_timeout = URL_TIMEOUT
        self.logs_timeout = LOGS_TIMEOUT
        self.where = (
            f"Modal environment {environment!r}" if environment else "Modal (default environment)"
        )

    def _run(self, args: list[str], timeout: float = LIST_TIMEOUT) -> str:
        env_args = ["--env", self.environment] if self.environment else []
        # `modal run REF ARGS` hands what follows REF to the function: options go before it.
        command = (
            [*self.executable, *args[:1], *env_args, *args[1:]]
            if args[:1] == ["run"]
            else [*self.executable, *args, *env_args]
        )
        shown = "modal " + " ".join(command[len(self.executable) :])
        try:
            # In an empty folder: `modal deploy` puts its working folder first on the import path,
            # and a modal.py or shlex.py committed at the repository's root would run there.
            with tempfile.TemporaryDirectory(prefix="deployer-modal-") as elsewhere:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=timeout,
                    stdin=subprocess.DEVNULL,
                    # No .pyc beside the app: render refuses an app folder holding __pycache__,
                    # since a committed one could run instead of the app.
                    env={
                        **os.environ,
                        "TERM": "dumb",
                        "NO_COLOR": "1",
                        "COLUMNS": "200",
                        "PYTHONDONTWRITEBYTECODE": "1",
                    },
                    # Its own session: Ctrl-C in the terminal reaches only us, and we let deploys in
                    # flight finish (or roll them back) instead of killing them half-way.
                    start_new_session=True,
                    cwd=elsewhere,
                )
        except FileNotFoundError:
            raise PlatformError(
                f"cannot run `{shown}`: the modal command is not installed (pip install modal)"
            ) from None
        except subprocess.TimeoutExpired:
            raise PlatformError(f"`{shown}` did not finish within {timeout:.0f} s") from None
        if done.returncode != 0:
            tail = "\n".join(
                (done.stderr.strip() or done.stdout.strip()).splitlines()[-TAIL_LINES:]
            )
            raise PlatformError(f"`{shown}` failed (exit {done.returncode}): {tail or 'no output'}")
        return done.stdout

    def _json(self, args: list[str]) -> list[dict]:
        out = self._run([*args, "--json"])
        try:
            rows = json.loads(out)
        except ValueError:
            raise PlatformError(
                f"`modal {' '.join(args)} --json` printed something that is not JSON: {out[:200]!r}"
            ) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PlatformError(
                f"`modal {' '.join(args)} --json` printed JSON of an unexpected shape"
            )
        return rows

    def apps(self) -> list[DeployedApp]:
        names = sorted(
            {
                str(r.get("description"))
                for r in self._json(["app", "list"])
                if r.get("state") == "deployed" and r.get("description")
            }
        )
        # One `modal app history` per app; they are independent, and each is mostly waiting.
        with ThreadPoolExecutor(max_workers=8) as pool:
            histories = list(pool.map(self.history, names))
        return [DeployedApp(name, history[0]) for name, history in zip(names, histories) if history]

    def history(self, name: str) -> list[Version]:
        try:
            rows = self._json(["app", "history", name])
        except PlatformError as exc:
            if "No App with name" in str(exc):
                return []
            raise
        versions = [_version(row) for row in rows]
        return sorted((v for v in versions if v is not None), key=lambda v: v.number, reverse=True)

    def deploy(self, app_file: Path, name: str, tag: str) -> None:
        # What it prints (build logs among it) is shown only when it fails: the URL to send
        # credentials to is asked of Modal's API (`web_url`), as build logs carry the image's text.
        self._run(
            ["deploy", os.path.abspath(app_file), "--name", name, "--tag", tag],
            timeout=DEPLOY_TIMEOUT,
        )

    def run(self, app_file: Path, function: str) -> None:
        self._run(["run", f"{os.path.abspath(app_file)}::{function}"], timeout=DEPLOY_TIMEOUT)

    def rollback(self, name: str, version: int | None = None) -> None:
        self._run(["app", "rollback", name, *([f"v{version}"] if version is not None else [])])

    def stop(self, name: str) -> None:
        self._run(["app", "stop", name, "--yes"])

    def recent_logs(self, name: str, lines: int) -> list[str]:
        # Without --follow it fetches and exits. --tail counts log entries, and one entry (a
        # traceback written at once) can hold many lines: the last `lines` of them are kept.
        if lines <= 0:  # modal refuses --tail 0
            return []
        out = self._run(["app", "logs", name, "--tail", str(lines)], timeout=self.logs_timeout)
        return log_lines(out)[-lines:]

    def read_volume_file(self, volume: str, path: str) -> str | None:
        # Into a file of our own, not standard output (`-`): the CLI prints its progress there too.
        with tempfile.TemporaryDirectory(prefix="deployer-volume-") as folder:
            local = Path(folder) / "file"
            try:
                self._run(
                    ["volume", "get", volume, path, str(local), "--force"],
                    timeout=VOLUME_FILE_TIMEOUT,
                )
            except PlatformError as exc:
                if _NOT_FOUND.search(str(exc).split("failed (exit", 1)[-1]):
                    return None
                raise
            if not local.is_file():
                return None  # a folder of that name, or nothing written
            if local.stat().st_size > MAX_STATE_FILE_BYTES:
                raise PlatformError(
                    f"{path} in volume {volume} is over {MAX_STATE_FILE_BYTES:,} bytes"
                )
            return local.read_text(encoding="utf-8", errors="replace")

    def write_volume_file(self, volume: str, path: str, text: str) -> None:
        with tempfile.TemporaryDirectory(prefix="deployer-volume-") as folder:
            local = Path(folder) / Path(path).name
            local.write_text(text, encoding="utf-8")
            self._run(
                ["volume", "put", volume, str(local), path, "--force"],
                timeout=VOLUME_FILE_TIMEOUT,
            )

    def web_url(self, name: str) -> str | None:
        # In a subprocess with a deadline: the SDK retries an unreachable server for about a minute.
        # A plain app serves from function `serve`; a GPU-snapshot app from method `serve` of class `Server`.
        snippet = (
            "import sys, modal\n"
            "app, fn, env = sys.argv[1], sys.argv[2], sys.argv[3] or None\n"
            "try:\n    url = modal.Function.from_name(app, fn, "
            "environment_name=env).get_web_url()\n"
            "except modal.exception.NotFoundError:\n    url = modal.Cls.from_name(app, "
            "'Server', environment_name=env)().serve.get_web_url()\n"
            "print(url or '')"
        )
        try:
            done = subprocess.run(
                [*sdk_python(), "-c", snippet, name, SERVE_FUNCTION, self.environment or ""],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.url_timeout,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise PlatformError(
                f"cannot read the URL of {name!r}: Modal did not answer within "
                f"{self.url_timeout:.0f} s"
            ) from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            if "NotFoundError" in last:
                return None
            raise PlatformError(f"cannot read the URL of {name!r} from Modal: {last}")
        return done.stdout.strip() or None


def log_lines(printed: str) -> list[str]:
    """The lines `modal app logs` printed (each entry's text as the container wrote it), as a
    terminal shows them: colour codes dropped, a line redrawn after carriage returns (a progress
    bar) as its last drawing, blank lines left out."""
    shown = []
    for line in _ESCAPE.sub("", printed).split("\n"):
        drawn = next((part for part in reversed(line.split("\r")) if part.strip()), "")
        if drawn:
            shown.append(drawn.rstrip())
    return shown


def _version(row: dict) -> Version | None:
    match = re.fullmatch(r"v(\d+)", str(row.get("version", "")))
    if not match:
        return None
    return Version(int(match.group(1)), str(row.get("tag") or ""), str(row.get("commit") or ""))
