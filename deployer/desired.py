"""What a checkout would deploy: each deployment's rendered app, its deploy hash and Modal tag.

The deploy hash covers everything that changes what runs: the rendered app's code (so the template,
the vLLM flags, the image...) and the contents of local folders the app uploads. It leaves out what
changes nothing that runs: comments (in the YAML or the rendered app) and YAML key order. The tag written to Modal carries the
hash and the project it belongs to, so the deployed state can be read back from Modal with no
state file of ours, and apps this repository manages can be told from any other app.

A git ref's desired state is computed the same way from that commit's files, for `plan --against`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import subprocess
import tarfile
import tokenize
from dataclasses import dataclass
from pathlib import Path

from .model import Deployment
from .render import RenderedApp, render

TAG_PREFIX = "deployer-"
TAG_HASH_CHARS = 30  # 120 bits; the whole tag stays within Modal's 50 characters
PROJECT_ENV = "DEPLOYER_PROJECT"
_TAG = re.compile(rf"{TAG_PREFIX}([0-9a-f]{{8}})-([0-9a-f]{{{TAG_HASH_CHARS}}})")


@dataclass(frozen=True)
class Project:
    name: str  # e.g. github.com/acme/serving
    id: str  # 8 hex characters of its hash, written into every tag

    @property
    def tag_prefix(self) -> str:
        return f"{TAG_PREFIX}{self.id}-"


@dataclass(frozen=True)
class Desired:
    deployment: Deployment
    app: RenderedApp
    deploy_hash: str
    tag: str


@dataclass(frozen=True)
class Tag:
    project_id: str
    hash_prefix: str


def parse_tag(tag: str) -> Tag | None:
    match = _TAG.fullmatch(tag)
    return Tag(match.group(1), match.group(2)) if match else None


def tag_for(project: Project, deploy_hash: str) -> str:
    return f"{project.tag_prefix}{deploy_hash[:TAG_HASH_CHARS]}"


def desired(deployments, out_dir: Path, project: Project, templates: Path | None = None) -> dict[str, Desired]:
    result = {}
    for deployment in deployments:
        app = render(deployment, out_dir, templates)
        digest = deploy_hash(deployment, app)
        result[deployment.name] = Desired(deployment, app, digest, tag_for(project, digest))
    return result


def deploy_hash(deployment: Deployment, app: RenderedApp) -> str:
    digest = hashlib.sha256(code_hash(app.source).encode())
    sources = [deployment.base_model.source, *(a.source for a in deployment.adapters)]
    for source in sources:
        if source.is_local:
            digest.update(b"\0" + folder_hash(source.path).encode())
    return digest.hexdigest()


def code_hash(source: str) -> str:
    """The Python code without its comments and blank lines: a reworded comment deploys nothing."""
    kept = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type not in (tokenize.COMMENT, tokenize.NL):
                kept.append(f"{token.type}:{token.string}")
    except (tokenize.TokenError, SyntaxError):
        return hashlib.sha256(source.encode()).hexdigest()  # not Python we can read: all of it counts
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def folder_hash(folder: Path) -> str:
    """Contents and relative names of every file under `folder` (what Modal uploads)."""
    digest = hashlib.sha256()
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.is_file() else []
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0" if path != root else b"\0")
        digest.update(_file_hash(path, *_stat_key(path)).encode() + b"\n")
    return digest.hexdigest()


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=4096)
def _file_hash(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the project ---------------------------------------------------------------------------------

def project_for(folder: Path) -> Project:
    """$DEPLOYER_PROJECT, else the git remote `origin` (the same for every clone, over https or
    ssh), else the repository folder's name."""
    name = os.environ.get(PROJECT_ENV) or _remote_name(folder) or (git_root(folder) or Path(os.path.abspath(folder))).name
    return Project(name, hashlib.sha256(name.encode()).hexdigest()[:8])


def _remote_name(folder: Path) -> str | None:
    url = _git(folder, "config", "--get", "remote.origin.url")
    if not url:
        return None
    url = re.sub(r"^[a-z+]+://", "", url.strip())  # https://, ssh://
    url = re.sub(r"^[^@/]+@", "", url)  # user@ or user:token@
    url = re.sub(r"^([^/:]+):(?!\d+/)", r"\1/", url)  # git@host:owner/repo → host/owner/repo
    url = re.sub(r"^([^/:]+):\d+/", r"\1/", url)  # host:22/owner/repo
    return re.sub(r"\.git/?$", "", url).rstrip("/").lower() or None


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_root(folder: Path) -> Path | None:
    top = _git(folder, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


class RefError(Exception):
    """A git ref that cannot be read; the message is safe to print."""


def export_ref(repo: Path, ref: str, dest: Path) -> str:
    """Write the files of commit `ref` into `dest` (no checkout, no change to the work tree).
    Returns the full commit id."""
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if not commit:
        raise RefError(f"{ref!r} is not a commit in {repo} (fetch it first, e.g. `git fetch origin main`)")
    try:
        done = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RefError(f"cannot read {ref!r}: {exc}") from None
    if done.returncode != 0:
        raise RefError(f"cannot read {ref!r}: {done.stderr.decode(errors='replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(dest, filter="data")  # refuses absolute paths and links out of dest
    return commit
