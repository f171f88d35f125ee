"""vLLM's `serve` flags per release, from catalogs extracted by scripts/extract_vllm_flags.py.

A catalog tells, for each flag of one vLLM version, how it is given on the command line (its
action kind and nargs), what type and choices it takes, and its default. The flag check uses it to
reject what that version would reject at startup; argv uses it to render each value the way that
flag parses it.
"""

from __future__ import annotations

import functools
import json
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
    return Catalog(data["vllm_version"], data["distribution"], flags)


def versions_with(name: str) -> list[str]:
    """The catalogued versions that know the flag `name`."""
    return [v for v in available_versions() if (c := load(v)) and c.lookup(name)]
