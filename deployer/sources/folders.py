"""Local `path:` sources: what may be read and uploaded from a model or adapter folder.

A folder must exist when we render, since its files are copied into the app's container. It must
also stay inside the repository: a pull request could otherwise point a path (or a symlink it
adds) at the CI machine's home folder and have `apply` upload it to Modal. The operator, not the
YAML, can allow that: DEPLOYER_ALLOW_OUTSIDE_REPO=1.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterable, Iterator

from deployer.core.budget import once
from deployer.core.limits import MAX_FOLDER_DEPTH, MAX_RUN_ENTRIES, REPEATED_BYTES
from deployer.core.paths import TooDeep, real, repository_root, walk
from deployer.spec.model import DeclaredSource, Deployment, Source

ALLOW_ENV = "DEPLOYER_ALLOW_OUTSIDE_REPO"


_ALSO_INSIDE: ContextVar[frozenset[Path]] = ContextVar("also_inside", default=frozenset())


@contextmanager
def also_inside(files: Iterable[Path]) -> Iterator[None]:
    """Within this block, these files count as part of the repository too: a git ref exported
    to a temporary folder borrows the working tree's ignored files (weights) by linking to them.
    Those files exactly, not the working tree: a ref naming `/abs/path/of/the/checkout/.env`
    would otherwise pass."""
    token = _ALSO_INSIDE.set(_ALSO_INSIDE.get() | {real(f) or f for f in files})
    try:
        yield
    finally:
        _ALSO_INSIDE.reset(token)


def outside_repository(target: Path, folder: Path) -> Path | None:
    """The repository root holding `folder` when `target`, every link followed, lies outside it
    or in its .git folder (and the operator has not allowed that); None when it may be read."""
    # The repository is found from the folder as written: resolving it first would follow a
    # linked deployments/ folder out of the repository and take wherever it lands as the root.
    root = repository_root(Path(os.path.abspath(folder)))
    if os.environ.get(ALLOW_ENV) == "1":
        return None
    real_root, real_target = real(root), real(target)
    if real_target is not None and (
        real_target in _ALSO_INSIDE.get()
        or (
            real_root is not None
            and real_target.is_relative_to(real_root)
            and not real_target.is_relative_to(real_root / ".git")
        )
    ):
        return None
    return real_root or root


def leads_to(target: Path, root: Path, via: str = "") -> str:
    """Where a refused path leads, for messages."""
    where = real(target)
    if where is None:
        return (
            f"leads{via} through links that cannot be followed (a loop, or a chain too long "
            "to resolve)"
        )
    if where.is_relative_to(root / ".git"):
        return f"resolves{via} to {where}, inside the repository's .git folder"
    return f"resolves{via} to {where}, outside the repository {root}"


def source_problems(source: Source, yaml_folder: Path) -> list[tuple[str, str, str]]:
    """(rule, problem, hint) for the source folder; each problem follows "base model " or
    "adapter 'name' "."""
    written = source.written_path
    if root := outside_repository(source.path, yaml_folder):
        via = " through a symlink" if _has_symlink(yaml_folder, written) else ""
        return [
            (
                "sources.outside-repo",
                f"folder {written!r} {leads_to(source.path, root, via)}",
                "keep model and adapter folders inside the repository; to allow this on a "
                f"trusted machine, set {ALLOW_ENV}=1",
            )
        ]
    if not source.path.exists():
        return [
            (
                "sources.missing",
                f"folder {written!r} does not exist (looked at {source.path})",
                "paths are relative to the YAML file that writes them",
            )
        ]
    if not source.path.is_dir():
        return [
            (
                "sources.not-a-folder",
                f"path {written!r} is not a folder",
                "point at the folder holding the model's files (config.json, weights)",
            )
        ]
    return _content_problems(source, yaml_folder)


def _content_problems(source: Source, yaml_folder: Path) -> list[tuple[str, str, str]]:
    """What apply would upload from the folder (Modal's add_local_dir follows links): no link out
    of the repository (~/.ssh), nothing that is not a plain file (a FIFO blocks a reader forever),
    nothing unreadable."""
    # Once per real folder: `../m`, `.././m` and `../m/.` are one folder to walk, however written.
    folder = real(source.path) or source.path
    linked_out, elsewhere, special, unreadable, git, too_deep, repeated, unwalked = once(
        ("walk", folder, yaml_folder), lambda: _walk(folder, yaml_folder)
    )
    problems = []
    if unwalked:
        problems.append(
            (
                "sources.too-many-files",
                f"folder {source.written_path!r} was not checked: this run has walked "
                f"{MAX_RUN_ENTRIES:,} files and folders of local model and adapter folders "
                "already",
                "keep local folders to the model's files; nested folders named as "
                "separate sources are each walked whole",
            )
        )
    if repeated:
        problems.append(
            (
                "sources.repeated-content",
                f"folder {source.written_path!r} names the same files many times over "
                f"(links or hard links): apply would upload {repeated[0]:,} bytes for "
                f"{repeated[1]:,} bytes of content",
                "remove the extra links: Modal uploads every name a folder holds",
            )
        )
    for found, problem, hint, rule in (
        (
            too_deep,
            f"is nested more than {MAX_FOLDER_DEPTH} folders deep",
            "flatten the folder: no model or adapter nests its files that deep",
            "sources.too-deep",
        ),
        (
            git,
            "is a git folder (the repository's own, or one inside it)",
            "point path: at the model or adapter folder itself: apply would upload the "
            "repository's history and the credentials in .git/config",
            "sources.git-folder",
        ),
        (
            linked_out,
            "links out of the repository",
            "remove the link or copy the file in; to allow this on a trusted machine, set "
            f"{ALLOW_ENV}=1",
            "sources.outside-repo",
        ),
        (
            elsewhere,
            "links out of the folder, elsewhere in the repository: apply uploads what a "
            "link points at (a git-ignored .env, say)",
            "copy the file into the folder, or point path: at the folder holding it; to "
            f"allow this on a trusted machine, set {ALLOW_ENV}=1",
            "sources.link-out-of-folder",
        ),
        (
            special,
            "is not a plain file or folder (a pipe, socket, device or broken link)",
            "remove it: apply would upload the folder",
            "sources.special-file",
        ),
        (
            unreadable,
            "cannot be read",
            "fix its permissions (apply uploads every file)",
            "sources.unreadable",
        ),
    ):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            problems.append(
                (
                    rule,
                    f"folder {source.written_path!r}: {found[0].relative_to(folder)} "
                    f"{problem}{more}",
                    hint,
                )
            )
    return problems


def _walk(folder: Path, yaml_folder: Path) -> tuple:
    linked_out, elsewhere, special, unreadable, git, too_deep = [], [], [], [], [], []
    uploaded, content, seen = 0, 0, set()
    walked = once(("source entries walked",), lambda: [0])
    own = real(folder)
    if (folder / ".git").exists():
        git.append(folder / ".git")
    try:
        for parent, dirs, files in walk(folder):
            walked[0] += len(dirs) + len(files)
            if walked[0] > MAX_RUN_ENTRIES:
                return [], [], [], [], [], [], None, True
            for name in dirs + files:
                entry = parent / name
                if name == ".git" and entry != folder / ".git":
                    git.append(entry)
                elif entry.is_symlink() and outside_repository(entry, yaml_folder):
                    linked_out.append(entry)
                elif (
                    entry.is_symlink()
                    and os.environ.get(ALLOW_ENV) != "1"
                    and not _leads_into(entry, own)
                ):
                    elsewhere.append(entry)
                elif not (entry.is_dir() or entry.is_file()):
                    special.append(entry)
                elif entry.is_file() and not os.access(entry, os.R_OK):
                    unreadable.append(entry)
                elif entry.is_file():
                    info = entry.stat()
                    uploaded += info.st_size
                    if (info.st_dev, info.st_ino) not in seen:
                        seen.add((info.st_dev, info.st_ino))
                        content += info.st_size
    except TooDeep as exc:
        too_deep.append(exc.path)
    # A 100 MB file behind 1,000 links is 100 GB to upload: what links may add is bounded.
    repeated = (
        (uploaded, content)
        if uploaded - content > REPEATED_BYTES and uploaded > 2 * content
        else None
    )
    return linked_out, elsewhere, special, unreadable, git, too_deep, repeated, False


def _leads_into(link: Path, folder: Path | None) -> bool:
    """Whether `link` leads inside `folder`, or to a file borrowed from the working tree."""
    target = real(link)
    return target is not None and (
        (folder is not None and target.is_relative_to(folder)) or target in _ALSO_INSIDE.get()
    )


def _has_symlink(folder: Path, written: str) -> bool:
    current = folder
    for part in Path(written).parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


REFUSED = (
    "sources.outside-repo",
    "sources.link-out-of-folder",
    "sources.special-file",
    "sources.git-folder",
    "sources.too-deep",
    "sources.repeated-content",
    "sources.too-many-files",
)


def yaml_folder_of(deployment: Deployment, declared: DeclaredSource) -> Path:
    """The folder of the YAML file that wrote this source: its path is relative to it."""
    return Path(os.path.abspath(deployment.document.where(declared.yaml_path).file)).parent


def problems_of(deployment: Deployment, declared: DeclaredSource) -> list[tuple[str, str, str]]:
    """(rule, problem, hint) for a local source; none for a Hub one. Once per folder and run: a
    thousand adapters naming one folder are one question."""
    source = declared.source
    if source.path is None:
        return []
    folder = yaml_folder_of(deployment, declared)
    return once(("source problems", source, folder), lambda: source_problems(source, folder))


def refused_sources(deployment: Deployment) -> frozenset[Source]:
    """Local folders not to be read at all, before any reading: their config files could lead
    out of the repository, and compatibility errors quote the values they hold."""
    return frozenset(
        d.source
        for d in deployment.declared_sources
        if any(rule in REFUSED for rule, _, _ in problems_of(deployment, d))
    )
