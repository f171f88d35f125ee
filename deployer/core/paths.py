"""Where a path really leads, for the checks that keep reads inside the repository.

`Path.resolve()` is not enough: when a chain of links expands past PATH_MAX it stops following
them and returns the rest as plain text, so a committed chain a few thousand characters long
"resolves" inside the repository while the kernel opens a file anywhere. Strict resolution
follows every link or fails; a path whose destination cannot be known is treated as leading
somewhere it must not.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Iterator

from deployer.core.budget import once
from deployer.core.limits import MAX_FOLDER_DEPTH


def display_path(path: Path) -> str:
    """Paths in messages: relative to the working folder when inside it (stable across machines)."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return absolute.as_posix()


def real(path: Path | str) -> Path | None:
    """The absolute path with every link followed, or None when that cannot be known (a chain too
    long to follow, a loop, a folder that cannot be searched). A path that does not exist yet
    resolves as far as it exists: nothing is there to read. Once per path within a run_scope (a
    thousand adapters naming one folder ask for it six thousand times)."""
    # Keyed by the path as written: abspath would fold `out/../m` into `m`, which realpath does
    # not when `out` is a link.
    return once(("real", os.getcwd(), os.fspath(path)), lambda: _real(path))


def _real(path: Path | str) -> Path | None:
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        # Followed as far as the links go; trusted only if its folder, followed strictly, agrees
        # (a chain cut short at PATH_MAX would leave links in the folder part).
        loose = Path(os.path.realpath(path))
        if loose.parent == loose:
            return None
        return loose if real(loose.parent) == loose.parent else None
    except (OSError, RuntimeError, ValueError):
        return None


def within(path: Path | str, folder: Path | str) -> bool:
    """Whether `path`, with every link followed, lies inside `folder` (links followed too)."""
    target, container = real(path), real(folder)
    return target is not None and container is not None and target.is_relative_to(container)


def read_plain(path: Path | str, limit: int) -> bytes | None:
    """The contents of `path` when it is a plain file of at most `limit` bytes, opened without
    following a link; None for anything else (missing, a link, a FIFO or device, too large,
    unreadable). For files a commit can plant where we keep our own: /dev/zero would fill memory,
    /proc/kmsg block forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            data = handle.read(limit + 1)
        except OSError:
            return None
    return data if len(data) <= limit else None


def linked_part(path: Path | str) -> Path | None:
    """The first link on the way from the working folder down to `path` (`path` itself included),
    if `path` lies under the working folder; else `path` itself if it is a link. Links above the
    working folder are the machine's layout; below it, they may have been committed."""
    target = Path(os.path.abspath(path))
    here = Path(os.getcwd())
    if not target.is_relative_to(here):
        return target if os.path.islink(target) else None
    current = here
    for part in target.relative_to(here).parts:
        current = current / part
        if os.path.islink(current):
            return current
    return None


@functools.lru_cache(maxsize=256)
def repository_root(folder: Path) -> Path:
    """The git work tree holding `folder` (a `.git` found going up), else the folder above it
    (deployments/ sits in the project root).

    A `.git` reached through a link is not believed when a repository above the link holds it: a
    pull request can commit `deployments -> ../elsewhere` at a folder with a `.git` of its own,
    which would otherwise become "the repository" and have its files read. Links above the only
    repository (macOS's /tmp) are the machine's layout and are followed."""
    chain = [folder, *folder.parents]
    found = [index for index, candidate in enumerate(chain) if (candidate / ".git").exists()]
    links = [index for index, candidate in enumerate(chain) if candidate.is_symlink()]
    for index in found:
        if not any(link >= index and any(higher > link for higher in found) for link in links):
            return chain[index]
    return folder.parent


class TooDeep(Exception):
    """A folder nested more than MAX_FOLDER_DEPTH levels below the top of a walk."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


def walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk(top), top-down, never entering a linked folder, as a loop rather than a recursion:
    in Python 3.11 os.walk and Path.rglob recurse once per level, and a committed folder 1,100
    deep exceeds the recursion limit. Raises TooDeep past MAX_FOLDER_DEPTH levels."""
    pending = [(Path(top), 0)]
    while pending:
        folder, depth = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        dirs, files, enter = [], [], []
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                linked = entry.is_symlink()
            except OSError:
                is_dir = linked = False
            (dirs if is_dir else files).append(entry.name)
            if is_dir and not linked:
                enter.append(folder / entry.name)
        yield folder, dirs, files
        if enter and depth >= MAX_FOLDER_DEPTH:
            raise TooDeep(enter[0])
        pending.extend((path, depth + 1) for path in reversed(enter))
