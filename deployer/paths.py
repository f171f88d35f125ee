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
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Hashable, Iterator, TypeVar

T = TypeVar("T")


def real(path: Path | str) -> Path | None:
    """The absolute path with every link followed, or None when that cannot be known (a chain too
    long to follow, a loop, a folder that cannot be searched). A path that does not exist yet
    resolves as far as it exists: nothing is there to read. Once per path within a run_scope (a
    thousand adapters naming one folder asked for it six thousand times)."""
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


MAX_DEPTH = 100  # folders below a model or adapter folder; real ones hold a handful


class TooDeep(Exception):
    """A folder nested more than MAX_DEPTH levels below the top of a walk."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


def walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """os.walk(top), top-down, never entering a linked folder, as a loop rather than a recursion:
    in Python 3.11 os.walk and Path.rglob recurse once per level, and a committed folder 1,100
    deep made every command an internal error. Raises TooDeep past MAX_DEPTH levels."""
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
        if enter and depth >= MAX_DEPTH:
            raise TooDeep(enter[0])
        pending.extend((path, depth + 1) for path in reversed(enter))


MAX_JSON_BYTES = 4 * 1024 * 1024  # a model's or adapter's config is a few kilobytes
# About how much memory the JSON one command parses may become (configs, safetensors headers),
# all together and each file once: 16 adapter folders holding a 4 MB config of `[{}, {}, ...]`
# (git stores it once) made 110 MB of objects each, and a plan parsed them again for every commit.
MAX_RUN_PARSED = 256 * 1024 * 1024


_RUN: ContextVar[dict | None] = ContextVar("run_cache", default=None)
_PARSED: ContextVar[dict | None] = ContextVar("parse_budget", default=None)


@contextmanager
def run_scope() -> Iterator[None]:
    """Within this block, `once` remembers: what a thousand deployments share (a base model's
    headers and names, a folder's walk or hash, a defaults file's index) is worked out once."""
    if _RUN.get() is not None:
        yield
        return
    token = _RUN.set({})
    try:
        yield
    finally:
        _RUN.reset(token)


def once(key: Hashable, compute: Callable[[], T]) -> T:
    cache = _RUN.get()
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]


class ParseBudgetSpent(ValueError):
    pass


@contextmanager
def parse_budget() -> Iterator[None]:
    """Within this block, JSON files are parsed once each (by inode: hard links are one file)
    and count against MAX_RUN_PARSED. Inside another, the outer holds: a command opens one, so
    a plan's working tree, refs and recorded commits share it."""
    if _PARSED.get() is not None:
        yield
        return
    token = _PARSED.set({"spent": 0, "parsed": {}})
    try:
        yield
    finally:
        _PARSED.reset(token)


def parsed_size(data: bytes) -> int:
    """About how many bytes of Python objects json.loads makes of `data`: a container is 56-64
    bytes, a string about 50, a number in a list 36 (`-6,` is 3 bytes of text: an int object of
    28 bytes outside CPython's small-int cache, and its slot), whatever the text's length."""
    return (
        len(data)
        + 64 * (data.count(b"{") + data.count(b"["))
        + 25 * data.count(b'"')
        + 40 * (data.count(b",") + data.count(b":"))
    )


def parsed_json(path: Path | str, raw: Callable[[], bytes], parse: Callable[[bytes], T]) -> T:
    """`parse(raw())` for the file at `path`, once per file version within a parse_budget.
    Raises ValueError when the budget is spent."""
    stat_now = os.stat(path)
    return parsed_once(
        (stat_now.st_dev, stat_now.st_ino, stat_now.st_size, stat_now.st_mtime_ns), raw, parse
    )


def parsed_once(key: Hashable, raw: Callable[[], bytes], parse: Callable[[bytes], T]) -> T:
    """`parse(raw())` once per `key` within a parse_budget (a file's version, a Hub file's
    address), charged against it. Raises ValueError when the budget is spent."""
    budget = _PARSED.get()
    if budget is None:
        return parse(raw())
    if key not in budget["parsed"]:
        data = raw()
        budget["spent"] += parsed_size(data)
        if budget["spent"] > MAX_RUN_PARSED:
            budget["over"] = True
            raise ParseBudgetSpent(
                "the configs and headers this command reads would take more than "
                f"{MAX_RUN_PARSED >> 20} MB of memory together; the deployer reads no more "
                "(check fewer deployments at once; configs are a few kilobytes)"
            )
        budget["parsed"][key] = parse(data)
    return budget["parsed"][key]


def parse_budget_spent() -> bool:
    """Whether a file was refused for the budget of the enclosing parse_budget."""
    budget = _PARSED.get()
    return bool(budget and budget.get("over"))


def read_json(path: Path | str, limit: int | None = None) -> object:
    """A small JSON file (config.json, adapter_config.json), parsed once per file version: a
    thousand adapters naming one folder share one parse, not a thousand copies in memory.
    Raises OSError or ValueError (too large, not JSON, nested too deeply, over the budget)."""
    import json

    limit = limit or MAX_JSON_BYTES

    def parse(data: bytes) -> object:
        try:
            return json.loads(data.decode("utf-8"))
        except RecursionError:
            raise ValueError("nested too deeply") from None

    with parse_budget():  # (one of its own, outside any command's)
        return parsed_json(path, lambda: _read_limited(path, limit), parse)


def _read_limited(path: Path | str, limit: int) -> bytes:
    """The file's bytes, never more than `limit` + 1 read (the size check is on what was read)."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(
            f"more than {limit:,} bytes, more than any such file holds (at most {limit:,})"
        )
    return data
