"""Findings about deployment files, as values, and the reporters that print them.

Every step of the pipeline returns diagnostics instead of raising, so one run can report every
problem in every file at once. Reporters decide the output format (text, JSON, GitHub annotations).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

from deployer.core.limits import EXCERPT, MAX_TEXT

JsonPath = tuple  # of str (mapping keys) and int (list indices)


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # a check that could not run here, and why: reported, never fails a run


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int  # 1-based; 0 when the finding is about the file as a whole
    column: int  # 1-based
    message: str
    severity: Severity = Severity.ERROR
    path: JsonPath = ()
    hint: str = ""
    rule: str = ""  # a short stable id, e.g. "schema.unknown-key", for JSON consumers and tests
    accepted: str = ""  # the deployment's reason for accepting this warning (its `accept:` entry)

    def __post_init__(self):
        # Messages quote values from files anyone can commit (MAX_TEXT says how much of each
        # can reach the output): each is cut, once, here.
        for name in ("message", "hint", "accepted"):
            text = getattr(self, name)
            if len(text) > MAX_TEXT:
                object.__setattr__(
                    self, name, f"{text[:MAX_TEXT]}… ({len(text) - MAX_TEXT:,} more characters)"
                )

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def is_accepted(self) -> bool:
        """A warning the deployment accepts with a reason: shown, but `--strict` passes it. An
        error is never accepted, even one raised from an accepted warning (`--locked`)."""
        return bool(self.accepted) and self.severity is Severity.WARNING


def format_path(path: Sequence) -> str:
    """`("adapters", 0, "name")` → `adapters[0].name`, the way a YAML author thinks of it."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# ---------------------------------------------------------------------------------------------
# Reporters


# Control characters would reach the terminal (escape sequences) or, after a newline, start a
# line of CI output that GitHub reads as a command (`::error ...`); bidi overrides reorder text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """`text` on one line with control characters escaped (`\\n`, `\\x1b`), cut to `limit`."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _excerpt(source: str, column: int) -> tuple[str, int]:
    """The part of a source line worth showing, and where the caret goes in it: a file that is
    one enormous line (or /proc/self/environ named on the command line) is not printed whole."""
    source = source.expandtabs(1)
    start = (
        max(0, min(column - 1 - EXCERPT // 2, len(source) - EXCERPT))
        if len(source) > EXCERPT
        else 0
    )
    shown = source[start : start + EXCERPT]
    before = printable(shown[: max(column - 1 - start, 0)])
    return ("…" if start else "") + printable(shown) + (
        "…" if start + EXCERPT < len(source) else ""
    ), len(before) + (1 if start else 0)


def _source_line(file: str, line: int, cache: dict[str, list[str]]) -> str | None:
    if line < 1:
        return None
    if file not in cache:
        try:
            cache[file] = Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            cache[file] = []
    lines = cache[file]
    return lines[line - 1] if line <= len(lines) else None


def render_text(diagnostics: Sequence[Diagnostic], *, color: bool = False) -> str:
    """Compiler-style output: `file:line:col: error: message`, the source line, a caret, the hint."""
    red, yellow, bold, dim, reset = (
        ("\033[31m", "\033[33m", "\033[1m", "\033[2m", "\033[0m") if color else ("",) * 5
    )
    cache: dict[str, list[str]] = {}
    chunks = []
    for d in diagnostics:
        # Messages quote YAML keys, file names and adapter configs: any of them could hold an
        # escape sequence or a line break followed by a fake finding.
        where = printable(f"{d.file}:{d.line}:{d.column}" if d.line else d.file)
        sev = {
            Severity.ERROR: f"{red}error{reset}",
            Severity.WARNING: f"{yellow}warning{reset}",
        }.get(d.severity, f"{dim}note{reset}")
        if d.is_accepted:
            sev = f"{dim}warning (accepted){reset}"
        at = f" {dim}[{printable(format_path(d.path))}]{reset}" if d.path else ""
        lines = [f"{bold}{where}{reset}: {sev}: {printable(d.message)}{at}"]
        source = _source_line(d.file, d.line, cache)
        if (
            source is not None and source.strip() and "\x00" not in source
        ):  # not text: nothing to show
            shown, caret = _excerpt(source, d.column)
            lines.append(f"  {d.line:>4} | {shown}")
            lines.append(f"       | {' ' * caret}^")
        if d.is_accepted:
            lines.append(f"  accepted: {printable(d.accepted)}")
        elif d.hint:
            lines.extend(
                f"  hint: {printable(h)}" if i == 0 else f"        {printable(h)}"
                for i, h in enumerate(d.hint.split("\n"))
            )
        chunks.append("\n".join(lines))
    return "\n".join(chunks)


def summary_line(diagnostics: Sequence[Diagnostic], files: int, notes: int = 0) -> str:
    errors = sum(d.is_error for d in diagnostics)
    accepted = sum(d.is_accepted for d in diagnostics)
    warnings = len(diagnostics) - errors - accepted
    noun = "file" if files == 1 else "files"
    also = f", {accepted} accepted" if accepted else ""
    skipped = f" ({notes} check{'s' * (notes != 1)} skipped, see the notes)" if notes else ""
    return (
        f"{files} {noun} checked: {errors} error{'s' * (errors != 1)}, {warnings} "
        f"warning{'s' * (warnings != 1)}{also}{skipped}"
    )


def _as_dict(d: Diagnostic) -> dict:
    item = asdict(d)
    item["severity"] = d.severity.value
    item["path"] = list(d.path)
    item["location"] = format_path(d.path)
    # The reason, on a warning the deployment accepts; null on every other finding.
    item["accepted"] = d.accepted if d.is_accepted else None
    return item


def render_json(
    diagnostics: Sequence[Diagnostic], notes: Sequence[Diagnostic] = (), **extra
) -> str:
    items = [_as_dict(d) for d in diagnostics]
    errors = sum(d.is_error for d in diagnostics)
    accepted = sum(d.is_accepted for d in diagnostics)
    doc = {
        "diagnostics": items,
        "errors": errors,
        "warnings": len(items) - errors - accepted,
        "accepted": accepted,
        "notes": [_as_dict(n) for n in notes],
        **extra,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands, so each finding shows inline on the pull request."""
    out = []
    for d in diagnostics:
        kind = {Severity.ERROR: "error", Severity.WARNING: "warning"}.get(d.severity, "notice")
        # An accepted warning was reviewed already: a notice, not a new warning on the pull request.
        kind = "notice" if d.is_accepted else kind
        props = [f"file={_escape_property(printable(d.file))}"]
        if d.line:
            props += [f"line={d.line}", f"col={d.column}"]
        title = f"deployer: {format_path(d.path)}" if d.path else "deployer"
        title += " (accepted)" if d.is_accepted else ""
        props.append(f"title={_escape_property(printable(title))}")
        message = printable(d.message) + (
            f"\naccepted: {printable(d.accepted)}"
            if d.is_accepted
            else "".join(
                f"\n{'hint: ' if i == 0 else ''}{printable(h)}"
                for i, h in enumerate(d.hint.split("\n"))
                if d.hint
            )
        )
        out.append(f"::{kind} {','.join(props)}::{_escape_data(message)}")
    return "\n".join(out)
