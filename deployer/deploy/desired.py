"""What a checkout would deploy: each deployment's rendered app, its deploy hash and Modal tag.

The deploy hash covers everything that changes what runs: the rendered app's code (so the template,
the vLLM flags, the image...), the runtime files written beside it (`RenderedApp.code_hash`), and
the contents of local folders the app uploads. It leaves out what changes nothing that runs:
comments (in the YAML, the rendered app or its runtime files) and YAML key order. The tag
written to Modal carries the hash and the project it belongs to, so the deployed state can be
read back from Modal with no state file of ours, and apps this repository manages can be told
from any other app.

A git ref's desired state is computed the same way from that commit's files (commit_files.py), for
`plan --against`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from deployer.core.budget import once, run_scope
from deployer.core.paths import TooDeep, real, walk
from deployer.deploy.git import git, git_root
from deployer.render.app import RenderedApp, render
from deployer.spec.model import Deployment

TAG_PREFIX = "deployer-"
TAG_HASH_CHARS = 30  # 120 bits; the whole tag stays within Modal's 50 characters
PROJECT_ENV = "DEPLOYER_PROJECT"
_TAG = re.compile(rf"{TAG_PREFIX}([0-9a-f]{{8}})-([0-9a-f]{{{TAG_HASH_CHARS}}})")


@dataclass(frozen=True)
class Project:
    name: str  # e.g. github.com/acme/serving
    id: str  # 8 hex characters of its hash, written into every tag
    stable: bool = True  # the same for every clone (set, or from the git remote); prune needs it
    source: str = "DEPLOYER_PROJECT"  # where the name came from, for messages

    @property
    def tag_prefix(self) -> str:
        return f"{TAG_PREFIX}{self.id}-"


@dataclass(frozen=True)
class Desired:
    deployment: Deployment
    app: RenderedApp
    deploy_hash: str
    tag: str
    # Dynamic deployments only (hot-add decisions, deploy/plan.py): the deploy hash of everything
    # but the adapters, and what each adapter stages (name, source at its commit or folder hash).
    fixed_hash: str | None = None
    adapter_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Tag:
    project_id: str
    hash_prefix: str


def parse_tag(tag: str) -> Tag | None:
    match = _TAG.fullmatch(tag)
    return Tag(match.group(1), match.group(2)) if match else None


def tag_for(project: Project, deploy_hash: str) -> str:
    return f"{project.tag_prefix}{deploy_hash[:TAG_HASH_CHARS]}"


def desired(
    deployments, out_dir: Path, project: Project, templates: Path | None = None
) -> dict[str, Desired]:
    with run_scope():  # a folder that many deployments share is hashed once
        return _desired(deployments, out_dir, project, templates)


def _desired(
    deployments, out_dir: Path, project: Project, templates: Path | None
) -> dict[str, Desired]:
    result = {}
    for deployment in deployments:
        app = render(deployment, out_dir, templates)
        digest = deploy_hash(deployment, app)
        fixed, ids = (
            _hot_add_view(deployment, out_dir, templates)
            if deployment.loads_adapters_dynamically
            else (None, ())
        )
        result[deployment.name] = Desired(
            deployment, app, digest, tag_for(project, digest), fixed, ids
        )
    return result


def _hot_add_view(
    deployment: Deployment, out_dir: Path, templates: Path | None
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(deploy hash of the deployment without its adapters, each adapter's identity): two
    versions whose hashes without adapters match differ only in what their adapters folder may
    take while running. Computed here, while the deployment's folders (a git ref's export, too)
    are on disk."""
    lock = deployment.lock
    bare = dataclasses.replace(
        deployment,
        adapters=(),
        lock=dataclasses.replace(lock, adapter_commits=()) if lock is not None else None,
    )
    fixed = deploy_hash(bare, render(bare, out_dir, templates))
    return fixed, tuple((a.name, _adapter_identity(deployment, a)) for a in deployment.adapters)


def _adapter_identity(deployment: Deployment, adapter) -> str:
    """What an adapter stages: a Hub repo at the commit the app downloads, or a folder's contents."""
    from deployer.sources.folders import refused_sources

    source = adapter.source
    if source.is_local:
        if source in refused_sources(deployment) or not source.path.is_dir():
            return f"path:{source.written_path} (not read)"  # as deploy_hash: by name only
        contents = once(("folder hash", source.path), lambda: folder_hash(source.path))
        return f"path:{source.written_path} (contents {contents[:12]})"
    revision = (deployment.lock and deployment.lock.adapter_commit(adapter.name)) or source.revision
    return f"{source.repo}@{revision}" if revision else str(source.repo)


def deploy_hash(deployment: Deployment, app: RenderedApp) -> str:
    """The app's code (where its local folders are on disk left out: only what they hold counts),
    then each local folder's contents under the role it plays. A folder the sources check refuses
    counts by its name only: a git ref's deployments are hashed without being validated, and
    `path: /etc` there would have every file under /etc read into a hash the plan prints."""
    from deployer.sources.folders import refused_sources

    digest = hashlib.sha256(app.code_hash.encode())
    refused = refused_sources(deployment)
    for declared in deployment.declared_sources:
        role, source = (
            "base model" if declared.adapter is None else f"adapter {declared.adapter}",
            declared.source,
        )
        if source in refused or (source.is_local and not source.path.is_dir()):
            digest.update(
                f"\0{role}\0by name:{source.written_path}".encode()
            )  # (missing, or a file)
        elif source.is_local:
            digest.update(
                f"\0{role}\0{once(('folder hash', source.path), lambda: folder_hash(source.path))}".encode()
            )
    return digest.hexdigest()


def folder_hash(folder: Path) -> str:
    """Contents and relative names of every file under `folder` (what Modal uploads)."""
    digest = hashlib.sha256()
    root = Path(folder)
    files = _files_under(root) if root.is_dir() else [root] if root.is_file() else []
    for path in files:
        digest.update(
            path.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0"
            if path != root
            else b"\0"
        )
        if path.is_symlink() and (
            (target := real(path)) is None or target.is_relative_to(PSEUDO_FILES)
        ):
            # Validate refuses links out of the repository, but a git ref's tree is hashed without
            # being validated: a committed link to /proc/kmsg would block the read forever (and a
            # chain of links too long to follow could lead there unseen).
            digest.update(b"link:" + os.fsencode(os.readlink(path)) + b"\n")
            continue
        digest.update(_content_hash(path).encode() + b"\n")
    return digest.hexdigest()


def _files_under(root: Path) -> list[Path]:
    files = []
    try:
        for folder, _, names in walk(root):
            files += [folder / name for name in names if (folder / name).is_file()]
    except TooDeep:
        pass  # refused by validate; a git ref's tree never holds one (MAX_COMMIT_PATH_PARTS)
    return sorted(files)


PSEUDO_FILES = Path("/proc")  # /sys files are not regular files to Python: already skipped


# A Git LFS pointer, exactly as git-lfs writes it (nothing else in the file: a "pointer" with a
# Jinja template after its lines would hash as its oid, and a changed template look unchanged).
LFS_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize "
    rb"(0|[1-9][0-9]{0,19})\n"
)


def _content_hash(path: Path) -> str:
    """The file's hash, read once per file (device, inode, size, change time) and run, not once
    per name: a committed 100 MB file behind 1,000 links (or a ref's export, which hard-links one
    copy of an object to every name holding it) would be read 1,000 times; and not forgotten
    when many small files pass between big ones (a cache bounded at 4,096 entries forgets each
    after 4,096 others)."""
    info = path.stat()
    return once(
        ("content hash", info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns),
        lambda: _file_hash(path, info.st_size),
    )


def _file_hash(path: Path, size: int) -> str:
    """SHA-256 of the contents, and their length. A Git LFS pointer stands for its object, whose
    id is that same SHA-256 and whose size it gives: a checkout without `git lfs pull` (or `git
    archive`) hashes like one with it, and a pointer's every byte counts."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO or device answers at once, and is
    except OSError as exc:  # unreadable: validate reports it; the hash must still be computed
        return f"unreadable:{exc.errno}"
    with os.fdopen(fd, "rb") as handle:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "not a plain file"  # ... never read
            first = handle.read(1 << 20)
            if size < 1024 and (match := LFS_POINTER.fullmatch(first)):
                return f"{match.group(1).decode()}:{int(match.group(2))}"
            digest, length = hashlib.sha256(first), len(first)
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                length += len(chunk)
        except OSError as exc:
            return f"unreadable:{exc.errno}"
    return f"{digest.hexdigest()}:{length}"


# -- the project ---------------------------------------------------------------------------------


def project_for(folder: Path) -> Project:
    """$DEPLOYER_PROJECT, else the git remote `origin` (the same for every clone, over https or
    ssh); else, not stable across machines, the repository's path (or the project folder's,
    outside git): unlike a folder name, two unrelated projects cannot share it by accident."""
    if name := os.environ.get(PROJECT_ENV):
        return _project(name, True, PROJECT_ENV)
    if name := _remote_name(folder):
        return _project(name, True, "the git remote origin")
    root = git_root(folder)
    if root is not None:
        return _project(str(root.resolve()), False, "the repository's path (no git remote origin)")
    absolute = Path(os.path.abspath(folder)).resolve()
    return _project(
        str(absolute.parent if absolute.name == "deployments" else absolute),
        False,
        "the project folder's path (not a git repository)",
    )


def _project(name: str, stable: bool, source: str) -> Project:
    return Project(name, hashlib.sha256(name.encode()).hexdigest()[:8], stable, source)


def _remote_name(folder: Path) -> str | None:
    url = git(folder, "config", "--get", "remote.origin.url")
    if not url:
        return None
    url = url.strip().split("?", 1)[0].split("#", 1)[0]  # no query string (tokens travel there too)
    url = re.sub(r"^[a-z+]+://", "", url)  # https://, ssh://
    host_and_path = url.split("/", 1)
    host_and_path[0] = host_and_path[0].rsplit("@", 1)[
        -1
    ]  # user[:password]@, even with @ in the password
    url = "/".join(host_and_path)
    url = re.sub(r"^([^/:]+):\d+/", r"\1/", url)  # host:22/owner/repo
    url = re.sub(r"^([^/:]+):", r"\1/", url)  # git@host:owner/repo (scp style) → host/owner/repo
    return re.sub(r"\.git/?$", "", url).rstrip("/").lower() or None
