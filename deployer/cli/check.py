"""The commands that read deployment files and write nothing outside build/: validate, render."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployer.cli.common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    display_path,
    failed,
    folder_options,
    report,
    report_options,
    required_lock,
    select,
)
from deployer.cli.lock import LOCKED_HELP
from deployer.core.diagnostics import render_github, render_json, render_text


def register(commands) -> None:
    validate = commands.add_parser(
        "validate",
        parents=[report_options()],
        help="check deployment files against the schema and beyond",
        description="Check deployment files: YAML syntax, the schema, and semantic checks. Reports "
        "every problem in every file at once.",
        epilog="examples:\n  deployer validate\n  deployer validate deployments/ "
        "other/one.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or folders (default: deployments/)",
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
    from deployer.checks.pipeline import check_paths

    checked = check_paths(args.paths, schema_only=args.schema_only)
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


def cmd_render(args) -> int:
    from deployer.checks.lock import floating_warning
    from deployer.render.app import render
    from deployer.render.output import current_app, write
    from deployer.render.templates import project_templates

    checked, selected, code = select(args, args.names)
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
