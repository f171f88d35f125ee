"""What every command shares: exit codes, reporting findings, and picking deployments by name."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from deployer.core.diagnostics import (
    Diagnostic,
    render_github,
    render_json,
    render_text,
    summary_line,
)

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def report(
    diagnostics: Sequence[Diagnostic],
    files: int,
    fmt: str,
    extra: dict | None = None,
    notes: Sequence[Diagnostic] = (),
) -> None:
    if fmt == "json":
        print(render_json(diagnostics, notes, files=files, **(extra or {})))
        return
    if fmt == "github":
        if diagnostics or notes:
            print(render_github([*diagnostics, *notes]))
        return
    if diagnostics or notes:
        print(
            render_text(
                [*diagnostics, *notes], color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")
            )
        )
    print(
        summary_line(diagnostics, files, len(notes)), file=sys.stderr if diagnostics else sys.stdout
    )


def failed(diagnostics: Sequence[Diagnostic], strict: bool) -> bool:
    return any(d.is_error or strict for d in diagnostics)


def display_path(path: Path) -> str:
    from deployer.checks.pipeline import display_path as shown

    return shown(path)


def select(args, names: Sequence[str], tolerate: str | None = None):
    """Validate the deployments folder and pick `names` (all if empty): (deployments, exit code).
    Findings whose rule starts with `tolerate` do not stop the command (the one explaining them)."""
    from deployer.checks.pipeline import check_paths
    from deployer.core.text import did_you_mean

    checked = check_paths([args.deployments])
    by_name = {d.name: d for d in checked.deployments}
    unknown = [n for n in names if n not in by_name]
    if unknown and (checked.ok or tolerate):
        for name in unknown:
            hint = (
                did_you_mean(name, by_name)
                or f"known deployments: {', '.join(sorted(by_name)) or 'none'}"
            )
            print(
                f"deployer {args.command}: no deployment named {name!r} in "
                f"{args.deployments}/ ({hint})",
                file=sys.stderr,
            )
        return checked, None, EXIT_USAGE
    blocking = [d for d in checked.diagnostics if not (tolerate and d.rule.startswith(tolerate))]
    if failed(blocking, getattr(args, "strict", False)):
        report(checked.diagnostics, len(checked.files), getattr(args, "format", "text"))
        print(
            f"nothing {'rendered' if args.command == 'render' else 'done'}: fix the errors "
            "above first",
            file=sys.stderr,
        )
        return checked, None, EXIT_PROBLEMS
    return checked, [by_name[n] for n in names] if names else list(checked.deployments), EXIT_OK
