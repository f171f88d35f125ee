"""Regular expressions from untrusted text (adapter configs, YAML), read as Python's re reads them
(PEFT chooses an adapter's target_modules with `re.fullmatch`) and matched in a child process with a
deadline: re cannot be interrupted from inside, and a pattern such as `(a+)+b` backtracks for
minutes on a 40-character name. RE2 runs in linear time but reads some patterns differently
(`\\d{,2}`, `[[:alpha:]]`), which would turn valid adapters into errors."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Sequence

from deployer.core.limits import MATCH_MEMORY, MATCH_SECONDS

# Runs in a fresh interpreter (-I -S: no site packages, no user environment): only re and json.
# Compiling is in there too: some patterns take seconds to compile ((?i) over wide ranges).
_CHILD = f"""\
import json, re, resource, sys, warnings
try:
    resource.setrlimit(resource.RLIMIT_AS, ({MATCH_MEMORY}, {MATCH_MEMORY}))
except (ValueError, OSError):
    pass  # macOS refuses some limits; the deadline still holds
warnings.simplefilter("ignore")  # FutureWarning for `[[` (a possible nested set): re reads it as a plain set
job = json.load(sys.stdin)
try:
    compiled = re.compile(job["pattern"])
except re.error as exc:
    print(json.dumps({{"error": exc.msg if exc.pos is None else f"{{exc.msg}} at position {{exc.pos}}"}}))
    raise SystemExit
except (OverflowError, RecursionError, ValueError, MemoryError) as exc:
    print(json.dumps({{"error": str(exc) or type(exc).__name__}}))
    raise SystemExit
match = getattr(compiled, job["how"], None)
print(json.dumps({{"error": None, "matched": bool(match) and any(match(subject) for subject in job["subjects"])}}))
"""


class PatternTooSlow(Exception):
    """The pattern did not finish within its deadline (or its matcher died)."""


class _Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds


_REMAINING: ContextVar[_Budget | None] = ContextVar("pattern_seconds", default=None)


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """All patterns matched within this block share `seconds`, and each distinct question is
    asked once: a deadline per pattern alone would let 1,000 aliases of one slow pattern take an
    hour. Inside another budget, the outer one holds (a plan checking many commits shares one)."""
    if _REMAINING.get() is not None:
        yield
        return
    token = _REMAINING.set(_Budget(seconds))
    try:
        yield
    finally:
        _REMAINING.reset(token)
        _asked.cache_clear()


def _run(pattern: str, subjects: Sequence[str], how: str, seconds: float) -> dict:
    remaining = _REMAINING.get()
    if remaining is None:
        return _ask(pattern, tuple(subjects), how, seconds)
    return _asked(pattern, tuple(subjects), how, seconds, remaining)


@functools.lru_cache(maxsize=1024)
def _asked(
    pattern: str, subjects: tuple[str, ...], how: str, seconds: float, remaining: _Budget
) -> dict:
    if remaining.seconds <= 0:
        raise PatternTooSlow("was not tried: the time for checking patterns is spent")
    started = time.monotonic()
    try:
        return _ask(pattern, subjects, how, min(seconds, remaining.seconds))
    finally:
        remaining.seconds -= time.monotonic() - started


def _ask(pattern: str, subjects: tuple[str, ...], how: str, seconds: float) -> dict:
    job = json.dumps({"pattern": pattern, "subjects": subjects, "how": how})
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _CHILD],
            input=job,
            capture_output=True,
            text=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired:
        raise PatternTooSlow(f"took over {seconds:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PatternTooSlow(f"its matcher failed ({last[:200]})")
    return json.loads(done.stdout)


def compile_error(pattern: str, seconds: float = MATCH_SECONDS) -> str | None:
    """Why Python's re cannot compile `pattern`, or None when it can. Raises PatternTooSlow when
    compiling takes longer than `seconds`."""
    return _run(pattern, [], "compile", seconds)["error"]


def any_match(
    pattern: str, subjects: Sequence[str], full: bool = False, seconds: float = MATCH_SECONDS
) -> bool:
    """Whether `pattern` matches any subject (`re.fullmatch` when `full`, else `re.search`).
    Raises PatternTooSlow when that takes longer than `seconds`; the pattern must compile."""
    return bool(_run(pattern, subjects, "fullmatch" if full else "search", seconds).get("matched"))
