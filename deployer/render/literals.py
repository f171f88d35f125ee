"""Python literals and comments in the rendered code.

Every value enters the code as a Python literal: `literal()` writes Python source that evaluates
to the value (never raw text), so no YAML value can become code. Text that goes into a `#`
comment passes through `comment()`, so it can neither start a line of code nor declare the
file's encoding. The template reaches these as its `py`, `argv` and `duration` filters.
"""

from __future__ import annotations

import re
from typing import Any

LINE_WIDTH = 100


def literal(value: Any, indent: int = 0) -> str:
    """`value` as Python source that evaluates to it: one line if it fits, else one item a line."""
    flat = _flat(value)
    if len(flat) + indent <= LINE_WIDTH or not isinstance(value, (list, tuple, dict)) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{literal(k)}: {literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    items = [f"{pad}{literal(v, indent + 4)}," for v in value]
    return open_ + "\n" + "\n".join(items) + "\n" + " " * indent + close


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_flat(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        text = repr(value)
        # Double quotes, as hand-written Python (and black) has them, when that needs no escape.
        return f'"{text[1:-1]}"' if text[0] == "'" and '"' not in value else text
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return (
            repr(value)
            if value == value and value not in (float("inf"), float("-inf"))
            else f"float({str(value)!r})"
        )
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def argv_literal(args: list, indent: int = 0) -> str:
    """Command-line arguments as a Python list, laid out as a command line when it does not fit
    on one line: a line for each flag, with the values that follow it."""
    flat = literal(args, indent)
    if "\n" not in flat:
        return flat
    lines: list[list[Any]] = []
    for arg in args:
        if not lines or (isinstance(arg, str) and arg.startswith("--")):
            lines.append([arg])
        else:
            lines[-1].append(arg)
    pad = " " * (indent + 4)
    items = "".join(f"{pad}{', '.join(_flat(a) for a in line)},\n" for line in lines)
    return "[\n" + items + " " * indent + "]"


def duration(seconds: Any) -> str:
    """A number of seconds as Python source: `5 * MINUTES` for whole minutes (the app defines
    `MINUTES = 60`), else its literal."""
    if type(seconds) is int and seconds > 0 and seconds % 60 == 0:
        return f"{literal(seconds // 60)} * MINUTES"
    return literal(seconds)


_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)  # bidi overrides reorder a line; surrogates: undecodable file names


# Python reads `coding: NAME` (or `coding=NAME`) in a comment on line 1 or 2 as the file's source
# encoding (PEP 263); `coding:unicode_escape` in a path would turn escaped quotes in the literals
# below back into real ones.
_CODING_COOKIE = re.compile(r"coding([:=])")


def comment(text: str) -> str:
    """Text safe inside a `#` comment: a newline in a file name must not start a line of code,
    and no text can declare the file's encoding."""
    return _CODING_COOKIE.sub(r"coding \1", _UNPRINTABLE.sub("?", text))
