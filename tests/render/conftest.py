"""A stand-in vLLM on PATH, for running rendered apps' Modal functions with `.local()`."""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import pytest

FAKE_VLLM = Path(__file__).with_name("fake_vllm.py")


class StandIn:
    """What the stand-in vLLM (fake_vllm.py) recorded, and how to point an app at it."""

    def __init__(self, record: Path, monkeypatch):
        self.record = record
        self._monkeypatch = monkeypatch
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def behave(self, **variables: str) -> None:
        """Set FAKE_VLLM_<NAME> variables (see fake_vllm.py): `behave(fails="...")`."""
        for name, value in variables.items():
            self._monkeypatch.setenv(f"FAKE_VLLM_{name.upper()}", value)

    def serve(self, app) -> None:
        """Have the rendered `app` start vLLM on a free port, rather than on its own 8000 (which
        another server on this machine may hold), and talk to it there."""
        self._monkeypatch.setattr(app, "VLLM_PORT", self.port)
        self._monkeypatch.setattr(
            app, "vllm_command", functools.partial(app.vllm_command, port=self.port)
        )

    def entries(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def starts(self) -> list[dict]:
        """Each start: its argv (after `python`) and environment."""
        return [entry for entry in self.entries() if "argv" in entry]

    def requests(self) -> list[str]:
        """Every request but GET /health, in order."""
        return [
            entry["request"]
            for entry in self.entries()
            if "request" in entry and entry["request"] != "GET /health"
        ]


@pytest.fixture
def stand_in_vllm(tmp_path, monkeypatch):
    """A `python` first on PATH that runs fake_vllm.py: the command a rendered app starts vLLM
    with (`python -P -m vllm.entrypoints.openai.api_server ...`) starts the stand-in instead."""
    folder = tmp_path / "stand-in-bin"
    folder.mkdir()
    python = folder / "python"
    python.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE_VLLM))} "$@"\n'
    )
    python.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    record = tmp_path / "stand-in-vllm.jsonl"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    stand_in = StandIn(record, monkeypatch)
    yield stand_in
    for start in stand_in.starts():
        try:
            os.kill(start["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
