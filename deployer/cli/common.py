"""What every command shares: exit codes, usage errors, the options several commands take,
reporting findings, and picking deployments by name."""

from __future__ import annotations

import argparse
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


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked: `UsageError(complaint,
    ...)`. `main` prints each complaint as `deployer COMMAND: complaint` on stderr, and exits 2."""

    def __init__(self, *complaints: str):
        super().__init__(*complaints)
        self.complaints = complaints


def report_options() -> argparse.ArgumentParser:
    """--format and --strict, for the commands that report findings (a parent parser)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="how to print findings: text (default), json, or github (workflow annotations "
        "shown inline on pull requests)",
    )
    options.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    return options


def folder_options(out: bool = True) -> argparse.ArgumentParser:
    """--deployments and --out, for the commands that read deployments (a parent parser). Left
    None when not given: `settle_folders` finds them once the command line is parsed."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--deployments",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of deployment files (default: deployments/, in this folder or the nearest "
        "one above it)",
    )
    if out:
        options.add_argument(
            "--out",
            type=Path,
            default=None,
            metavar="DIR",
            help="folder of rendered apps, one subfolder per deployment (default: build/ beside "
            "deployments/)",
        )
    return options


def settle_folders(args) -> None:
    """Fill in --deployments and --out where not given: deployments/ as git finds `.git` (in the
    working folder or the nearest folder above it, within the repository), build/ beside it. Run
    from the project's root, they are `deployments` and `build`, as they always were. Paths the
    user gave stay relative to where the command was run, which is never changed."""
    if getattr(args, "deployments", False) is None:
        from deployer.checks.pipeline import find_deployments

        args.deployments = find_deployments()
        if getattr(args, "out", False) is None:
            args.out = args.deployments.parent / "build"
    if getattr(args, "out", False) is None:
        args.out = Path("build")


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
    return any(d.is_error or (strict and not d.is_accepted) for d in diagnostics)


def required_lock(checked):
    """`--locked`: what the lock lacks is an error, a missing lock too (checks/lock.py)."""
    import dataclasses

    from deployer.checks.lock import require_lock

    return dataclasses.replace(
        checked, diagnostics=require_lock(checked.diagnostics, checked.deployments)
    )


def select(args, names: Sequence[str], tolerate: str | None = None, alone: bool = False):
    """Validate the deployments folder and pick `names` (all if empty): (checked, deployments,
    exit code); deployments is None when findings stop the command (exit 1). A name that is not a
    deployment is a UsageError. Findings whose rule starts with `tolerate` do not stop the command
    (the one explaining them). `alone`: the named deployments go ahead when only other files have
    findings (render, fit and serve of one deployment while another is half written); a line on
    stderr names those files, and `checked` keeps only the named deployments' findings. Without
    names, or without `alone`, any finding stops it."""
    import dataclasses

    from deployer.checks.pipeline import check_paths
    from deployer.core.text import did_you_mean

    checked = check_paths([args.deployments])
    if getattr(args, "locked", False):
        checked = required_lock(checked)
    by_name = {d.name: d for d in checked.deployments}
    unknown = [n for n in names if n not in by_name]
    if unknown and (checked.ok or tolerate):
        known = f"known deployments: {', '.join(sorted(by_name)) or 'none'}"
        raise UsageError(
            *(
                f"no deployment named {name!r} in {args.deployments}/ "
                f"({did_you_mean(name, by_name) or known})"
                for name in unknown
            )
        )
    blocking = [d for d in checked.diagnostics if not (tolerate and d.rule.startswith(tolerate))]
    strict = getattr(args, "strict", False)
    if alone and names and not unknown:
        own = {file for n in names for file in by_name[n].sources}
        others = sorted({d.file for d in blocking if d.file not in own and failed([d], strict)})
        blocking = [d for d in blocking if d.file in own]
        checked = dataclasses.replace(
            checked, diagnostics=tuple(d for d in checked.diagnostics if d.file in own)
        )
        if others:
            print(
                f"deployer {args.command}: going ahead with {', '.join(names)}; not with "
                f"{', '.join(others)}, which {'has' if len(others) == 1 else 'have'} errors "
                "(`deployer validate` shows them)",
                file=sys.stderr,
            )
    if failed(blocking, strict):
        report(checked.diagnostics, len(checked.files), getattr(args, "format", "text"))
        print(
            f"nothing {'rendered' if args.command == 'render' else 'done'}: fix the errors "
            "above first",
            file=sys.stderr,
        )
        return checked, None, EXIT_PROBLEMS
    return checked, [by_name[n] for n in names] if names else list(checked.deployments), EXIT_OK


def interpreter(python: str) -> str:
    """`python` as the user meant it from where they ran the command: vLLM runs in another folder,
    where `.venv-vllm/bin/python` names nothing. A bare name (`python3`) is looked up on PATH."""
    if os.sep in python or (os.altsep and os.altsep in python) or python.startswith("~"):
        return os.path.abspath(os.path.expanduser(python))
    return python
