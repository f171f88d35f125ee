"""An image's complete Python package set, resolved by uv for Modal's platform: what `deployer lock`
writes to lock/images/<key>.txt, and reading versions back out of it.

uv (the `uv` package's own binary) resolves for another Python and platform than this machine's,
and writes every package pinned with its hashes, a `# via` line under each: a diff of two
resolutions reads package by package in a pull request.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from deployer.core.limits import MAX_LOCK_IMAGE_BYTES, PACKAGE_RESOLVE_SECONDS

# Modal's containers: Linux on x86_64; its CUDA images carry glibc 2.35, and 2.28 is what vLLM's
# and torch's wheels ask for.
PLATFORM = "x86_64-manylinux_2_28"
COMPILE_COMMAND = "deployer lock"  # what the file's header says made it
INPUT_FILE = "requirements.in"  # named in each `# via -r` line: the same on every machine
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


class PackageProblem(Exception):
    """The package set could not be resolved; the message says why (uv's own last lines)."""


def uv_command() -> list[str]:
    """uv, from the `uv` package installed with the deployer; else one on PATH."""
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        return ["uv"]


def compile_requirements(requirements: Sequence[str], python: str, platform: str = PLATFORM) -> str:
    """Every package `requirements` need on `python` and `platform`, pinned with hashes, as uv
    writes it. Raises PackageProblem when uv cannot resolve them (or reach the registry)."""
    with tempfile.TemporaryDirectory(prefix="deployer-lock-") as folder:
        Path(folder, INPUT_FILE).write_text("".join(f"{r}\n" for r in requirements))
        command = [
            *uv_command(),
            "pip",
            "compile",
            INPUT_FILE,
            "--python-version",
            python,
            "--python-platform",
            platform,
            "--generate-hashes",
            "--custom-compile-command",
            COMPILE_COMMAND,
            "--no-progress",
            "--quiet",
        ]
        # uv reads UV_INDEX_URL and UV_DEFAULT_INDEX itself, not pip's settings: a machine that
        # reaches the registry through a mirror usually says so in PIP_INDEX_URL.
        if (mirror := os.environ.get("PIP_INDEX_URL")) and not (
            os.environ.get("UV_INDEX_URL") or os.environ.get("UV_DEFAULT_INDEX")
        ):
            command += ["--default-index", mirror]
        try:
            done = subprocess.run(
                command,
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=PACKAGE_RESOLVE_SECONDS,
            )
        except FileNotFoundError:
            raise PackageProblem("uv is not installed (pip install uv)") from None
        except subprocess.TimeoutExpired:
            raise PackageProblem(
                f"uv did not resolve them within {PACKAGE_RESOLVE_SECONDS} s"
            ) from None
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-6:]
        raise PackageProblem("uv pip compile failed: " + " / ".join(s.strip() for s in last))
    if len(done.stdout.encode()) > MAX_LOCK_IMAGE_BYTES:
        raise PackageProblem(f"the resolution is larger than {MAX_LOCK_IMAGE_BYTES:,} bytes")
    return done.stdout


def pins(text: str) -> dict[str, str]:
    """Package name (normalised) → version, of every `name==version` line of a requirements file."""
    return {normalise(name): version for name, version in _PIN.findall(text)}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
