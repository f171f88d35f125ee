"""What one command may spend: work remembered once per run (`run_scope`, `once`), and the
memory the JSON it parses may become (`parse_budget`), so that a thousand deployments sharing a
folder cost one read, and hostile files cannot exhaust memory."""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Callable, Hashable, Iterator, TypeVar

from deployer.core.limits import MAX_JSON_BYTES, MAX_RUN_PARSED

T = TypeVar("T")

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
