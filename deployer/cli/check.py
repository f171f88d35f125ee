"""The commands that read deployment files and write nothing outside build/: validate, render."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    failed,
    folder_options,
    interpreter,
    report,
    report_options,
    required_lock,
    select,
)
from deployer.cli.lock import LOCKED_HELP
from deployer.core.diagnostics import Diagnostic, render_github, render_json, render_text
from deployer.core.paths import display_path


def register(commands) -> None:
    validate = commands.add_parser(
        "validate",
        parents=[report_options(), folder_options(out=False)],
        help="check deployment files against the schema and beyond",
        description="Check deployment files: YAML syntax, the schema, and semantic checks. Reports "
        "every problem in every file at once. A NAME that is not a file or folder is the "
        "deployment deployments/NAME.yaml. With DEPLOYER_VLLM_PYTHON naming a Python with the "
        "pinned vLLM (its CPU build is enough), that vLLM also judges each command line: its "
        "argument parser, serve-argument and engine configuration checks.",
        epilog="examples:\n  deployer validate\n  deployer validate chess-puzzle\n  deployer "
        "validate deployments/ other/one.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH|NAME",
        help="files, folders or deployment names (default: every file in deployments/)",
    )
    validate.add_argument(
        "--schema-only",
        action="store_true",
        help="check YAML and the JSON Schema only: no model or adapter reading, no semantic checks",
    )
    validate.add_argument("--locked", action="store_true", help=LOCKED_HELP)
    validate.set_defaults(run=cmd_validate)

    render = commands.add_parser(
        "render",
        parents=[report_options(), folder_options()],
        help="write one Modal app per deployment",
        description="Validate, then render each deployment into <out>/<name>/app.py. Writes nothing "
        "if any deployment has errors.",
        epilog="examples:\n  deployer render\n  deployer render chess-puzzle --out /tmp/apps\n "
        " deployer render --check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument(
        "names", nargs="*", metavar="NAME", help="deployment (app) names to render (default: all)"
    )
    render.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any rendered file would change",
    )
    render.add_argument("--locked", action="store_true", help=LOCKED_HELP)
    render.set_defaults(run=cmd_render)


def cmd_validate(args) -> int:
    import dataclasses

    from deployer.checks.pipeline import Checked, check_paths
    from deployer.vllm.engine import VLLM_PYTHON_ENV

    paths, unknown = _named_files(args.paths, args.deployments)
    if paths or not args.paths:
        checked = check_paths(
            paths or [args.deployments],
            schema_only=args.schema_only,
            engine=True,
            vllm_python=interpreter(python)
            if (python := os.environ.get(VLLM_PYTHON_ENV))
            else None,
        )
    else:
        checked = Checked((), (), ())  # only names of no deployment: nothing to read
    if unknown:
        checked = dataclasses.replace(checked, diagnostics=(*unknown, *checked.diagnostics))
    if args.locked:
        checked = required_lock(checked)
    report(
        checked.diagnostics,
        len(checked.files),
        args.format,
        {"deployments": [d.name for d in checked.deployments]},
        checked.notes,
    )
    return EXIT_PROBLEMS if failed(checked.diagnostics, args.strict) else EXIT_OK


def _named_files(given: list[Path], folder: Path) -> tuple[list[Path], list[Diagnostic]]:
    """The files and folders `given`, a deployment's name (not a path that exists, no folder or
    YAML suffix in it) standing for its file in `folder`; a name with no file there is an error
    with a did-you-mean among the deployments in `folder`."""
    from deployer.checks.pipeline import YAML_SUFFIXES
    from deployer.core.text import did_you_mean

    paths: list[Path] = []
    unknown: list[Diagnostic] = []
    for path in given:
        if path.exists() or len(path.parts) != 1 or path.suffix in YAML_SUFFIXES:
            paths.append(path)  # discover says what is wrong with a path that is missing
            continue
        found = [folder / f"{path.name}{suffix}" for suffix in YAML_SUFFIXES]
        if named := next((file for file in found if file.is_file()), None):
            paths.append(named)
            continue
        known = sorted(
            file.stem
            for suffix in YAML_SUFFIXES
            for file in (folder.glob(f"*{suffix}") if folder.is_dir() else ())
            if not file.name.startswith("_")
        )
        listed = f"deployments in {display_path(folder)}/: {', '.join(known) or 'none'}"
        unknown.append(
            Diagnostic(
                str(path),
                0,
                0,
                f"no such file, folder or deployment (no {display_path(found[0])})",
                hint=did_you_mean(path.name, known) or listed,
                rule="files.missing",
            )
        )
    return paths, unknown


def cmd_render(args) -> int:
    from deployer.checks.lock import floating_warning
    from deployer.render.app import render
    from deployer.render.output import current_app, write
    from deployer.render.templates import project_templates

    checked, selected, code = select(args, args.names, alone=True)
    if selected is None:
        return code
    # Unlocked: rendered as before, saying what floats (on stderr: stdout lists the apps).
    floating = [w for d in selected if (w := floating_warning(d)) is not None]
    results = []
    for deployment in selected:
        app = render(deployment, args.out, project_templates(args.deployments))
        shown = display_path(app.path)
        if args.check:
            current = current_app(app)
            status = (
                "up to date"
                if current == app.source
                else ("missing" if not os.path.lexists(app.path) else "out of date")
            )
        else:
            status = "written" if write(app) else "unchanged"
        results.append(
            {"name": app.name, "path": shown, "content_hash": app.content_hash, "status": status}
        )

    if args.format == "json":
        found = [*checked.diagnostics, *floating]
        print(render_json(found, files=len(checked.files), rendered=results))
    else:
        if checked.diagnostics:
            report(checked.diagnostics, len(checked.files), args.format)
        if floating and args.format == "github":
            print(render_github(floating))
        elif floating:
            print(render_text(floating, color=False), file=sys.stderr)
        for r in results:
            print(f"{r['status']:>11}  {r['path']}  ({r['name']}, {r['content_hash'][:12]})")
    stale = [r for r in results if r["status"] in ("missing", "out of date")]
    if stale:
        print(
            f"{len(stale)} rendered app(s) differ from their deployments; run `deployer render`",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    return EXIT_OK
