"""vLLM's `serve` flags per release, from catalogs extracted by scripts/extract_vllm_flags.py.

A catalog tells, for each flag of one vLLM version, how it is given on the command line (its
action kind and nargs), what type and choices it takes, and its default. The flag check uses it to
reject what that version would reject at startup; argv uses it to render each value the way that
flag parses it. A catalog also records the release's `Requires-Python`, which the image's Python
must meet for `pip install vllm==VERSION` to succeed.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOG_DIR = Path(__file__).parents[1] / "data" / "vllm_flags"

# How a catalog's type names are checked and rendered, by the type inside vLLM's wrappers
# (`_optional_type(int)` is an int that may also be "None", `_parse_type(loads)` parses JSON).
INT_TYPES = {"int"}
SIZE_TYPES = {"human_readable_int", "human_readable_int_or_auto"}  # 4096, or strings like "4k"
FLOAT_TYPES = {"float"}
JSON_TYPES = {"loads", "parse_dataclass", "union_dict_and_str"}  # mappings go as JSON
WRAPPERS = ("_optional_type(", "_parse_type(")
BOUND_TESTS = {
    "gt": (">", float.__gt__),
    "ge": (">=", float.__ge__),
    "lt": ("<", float.__lt__),
    "le": ("<=", float.__le__),
}


@dataclass(frozen=True)
class Flag:
    name: str  # the canonical long name, without dashes
    options: tuple[str, ...]
    kind: str  # store, boolean_optional, store_true, store_false, append, count, store_const
    nargs: int | str | None
    type: str | None
    choices: tuple | None
    default: Any
    help: str
    bounds: tuple[
        tuple[str, float], ...
    ] = ()  # (("gt", 0), ("le", 1)): pydantic bounds of its config field
    bounds_source: str | None = None  # the field, e.g. "CacheConfig.gpu_memory_utilization"

    @property
    def base_type(self) -> str | None:
        """The type inside vLLM's wrappers: "int" for `_optional_type(int)`."""
        kind = self.type
        while kind and kind.startswith(WRAPPERS) and kind.endswith(")"):
            kind = kind[kind.index("(") + 1 : -1]
        return kind

    def out_of_bounds(self, number: float) -> str | None:
        """The bound `number` breaks, as text such as "> 0", or None."""
        for name, limit in self.bounds:
            symbol, holds = BOUND_TESTS[name]
            if not holds(float(number), float(limit)):
                return f"{symbol} {limit:g}"
        return None

    def bounds_text(self) -> str:
        return " and ".join(f"{BOUND_TESTS[name][0]} {limit:g}" for name, limit in self.bounds)

    @property
    def takes_list(self) -> bool:
        return self.nargs in ("+", "*") or (isinstance(self.nargs, int) and self.nargs > 1)

    @property
    def is_boolean(self) -> bool:
        return self.kind in ("boolean_optional", "store_true", "store_false")


@dataclass(frozen=True)
class Catalog:
    version: str
    distribution: str
    flags: dict[str, Flag]  # by every long option, without dashes (aliases included)
    requires_python: str | None = None  # the release's Requires-Python, e.g. ">=3.10,<3.14"

    def lookup(self, name: str) -> Flag | None:
        return self.flags.get(name)

    @property
    def names(self) -> list[str]:
        return sorted({f.name for f in self.flags.values()})


def available_versions() -> list[str]:
    return sorted((p.stem for p in CATALOG_DIR.glob("*.json")), key=_version_key)


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


@functools.cache
def load(version: str) -> Catalog | None:
    path = CATALOG_DIR / f"{version}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    flags: dict[str, Flag] = {}
    for name, entry in data["flags"].items():
        flag = Flag(
            name=name,
            options=tuple(entry["options"]),
            kind=entry["kind"],
            nargs=entry["nargs"],
            type=entry["type"],
            choices=tuple(entry["choices"]) if entry["choices"] is not None else None,
            default=entry["default"],
            help=entry["help"],
            bounds=tuple(
                (name, limit)
                for name, limit in (entry.get("bounds") or {}).items()
                if name in BOUND_TESTS
            ),
            bounds_source=(entry.get("bounds") or {}).get("source"),
        )
        for option in flag.options:
            if option.startswith("--"):
                flags.setdefault(option[2:], flag)
    return Catalog(data["vllm_version"], data["distribution"], flags, data.get("requires_python"))


def versions_with(name: str) -> list[str]:
    """The catalogued versions that know the flag `name`."""
    return [v for v in available_versions() if (c := load(v)) and c.lookup(name)]


# One clause of a Requires-Python specifier (PEP 440): the comparison forms metadata uses.
CLAUSE = re.compile(r"^(~=|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?$")
# Python's patch releases stay far below this; a series is tried at each patch up to it.
PATCHES = range(100)


@dataclass(frozen=True)
class PythonRange:
    """A Requires-Python specifier such as ">=3.10,<3.14", read without `packaging` (which the
    deployer does not depend on)."""

    text: str
    clauses: tuple[tuple[str, tuple[int, ...], bool], ...]  # (operator, release, ends in .*)

    @classmethod
    def parse(cls, text: str) -> PythonRange:
        """Raises ValueError for a form it does not read (=== or a pre-release, for instance)."""
        clauses = []
        for part in text.split(","):
            match = CLAUSE.match(part.strip())
            if not match:
                raise ValueError(f"cannot read the Requires-Python clause {part.strip()!r}")
            operator, release, wildcard = match.groups()
            if wildcard and operator not in ("==", "!="):
                raise ValueError(f"{operator} takes no wildcard: {part.strip()!r}")
            if operator == "~=" and "." not in release:
                raise ValueError(f"~= needs two or more release numbers: {part.strip()!r}")
            clauses.append((operator, tuple(int(n) for n in release.split(".")), bool(wildcard)))
        return cls(text, tuple(clauses))

    def __str__(self) -> str:
        """The clauses with lower bounds first, as people write them: ">=3.10, <3.14"."""
        parts = sorted((p.strip() for p in self.text.split(",")), key=lambda p: p[0] != ">")
        return ", ".join(parts)

    def allows(self, version: tuple[int, ...]) -> bool:
        return all(_holds(version, *clause) for clause in self.clauses)

    def admits_series(self, series: str) -> bool:
        """Whether some release of a series ("3.12") is in the range. Modal installs the patch
        release it chooses, so only a series none of whose releases fits is sure to fail."""
        major, minor = (int(n) for n in series.split("."))
        return any(self.allows((major, minor, patch)) for patch in PATCHES)


def _holds(
    version: tuple[int, ...], operator: str, release: tuple[int, ...], wildcard: bool
) -> bool:
    if operator == "~=":  # ~=3.10 is >=3.10 and ==3.*
        return _holds(version, ">=", release, False) and _holds(version, "==", release[:-1], True)
    if wildcard:  # ==3.10.* matches on the release's leading numbers
        matches = _padded(version, len(release))[: len(release)] == release
        return matches if operator == "==" else not matches
    width = max(len(version), len(release))
    left, right = _padded(version, width), _padded(release, width)
    return {
        "==": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[operator]


def _padded(release: tuple[int, ...], width: int) -> tuple[int, ...]:
    return release + (0,) * (width - len(release))
