"""The `deployer` command: parses arguments, runs pipeline steps, reports, sets the exit code.

Exit codes: 0 success (warnings allowed unless --strict), 1 problems found, 2 usage error.
Heavy libraries are imported inside the commands that need them, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .diagnostics import Diagnostic, render_github, render_json, render_text, summary_line

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Declarative, checked serving of LoRA adapters with vLLM on Modal.

Deployments are YAML files in deployments/ (deployments/_defaults.yaml is merged under each).
`deployer validate` checks them; `deployer render` writes one Modal app per deployment to
build/<name>/app.py, which `modal deploy` takes as it is."""

EXAMPLES = """\
examples:
  deployer validate                         check every file in deployments/
  deployer validate deployments/chess-puzzle.yaml --format github
  deployer render                           write build/<name>/app.py for every deployment
  deployer render chess-puzzle --out /tmp/apps
  deployer render --check                   fail if build/ is not what render would write
  deployer schema > deployment.schema.json  the JSON Schema, for editors and other tools
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployer", description=DESCRIPTION, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = argparse.ArgumentParser(add_help=False)
    report.add_argument("--format", choices=("text", "json", "github"), default="text", help="how to print findings: text (default), json, or github (workflow annotations shown inline on pull requests)")
    report.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")

    validate = commands.add_parser(
        "validate",
        parents=[report],
        help="check deployment files against the schema and beyond",
        description="Check deployment files: YAML syntax, the schema, and semantic checks. Reports every problem in every file at once.",
        epilog="examples:\n  deployer validate\n  deployer validate deployments/ other/one.yaml --format json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders (default: deployments/)")

    render = commands.add_parser(
        "render",
        parents=[report],
        help="write one Modal app per deployment",
        description="Validate, then render each deployment into <out>/<name>/app.py. Writes nothing if any deployment has errors.",
        epilog="examples:\n  deployer render\n  deployer render chess-puzzle --out /tmp/apps\n  deployer render --check",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("names", nargs="*", metavar="NAME", help="deployment (app) names to render (default: all)")
    render.add_argument("--deployments", type=Path, default=Path("deployments"), metavar="DIR", help="folder of deployment files (default: deployments/)")
    render.add_argument("--out", type=Path, default=Path("build"), metavar="DIR", help="output folder (default: build/)")
    render.add_argument("--check", action="store_true", help="write nothing; exit 1 if any rendered file would change")

    commands.add_parser("schema", help="print the deployment JSON Schema", description="Print the JSON Schema (draft 2020-12) that deployment files follow.")
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"validate": cmd_validate, "render": cmd_render, "schema": cmd_schema}[args.command](args)
    except KeyboardInterrupt:
        print("deployer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # never a traceback for the user; DEPLOYER_DEBUG=1 shows it
        if os.environ.get("DEPLOYER_DEBUG"):
            raise
        print(f"deployer: internal error: {type(exc).__name__}: {exc}\n(this is a bug in deployer; run with DEPLOYER_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_PROBLEMS


def _report(diagnostics: Sequence[Diagnostic], files: int, fmt: str, extra: dict | None = None) -> None:
    if fmt == "json":
        print(render_json(diagnostics, files=files, **(extra or {})))
        return
    if fmt == "github":
        if diagnostics:
            print(render_github(diagnostics))
        return
    if diagnostics:
        print(render_text(diagnostics, color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    print(summary_line(diagnostics, files), file=sys.stderr if diagnostics else sys.stdout)


def _failed(diagnostics: Sequence[Diagnostic], strict: bool) -> bool:
    return any(d.is_error or strict for d in diagnostics)


def cmd_validate(args) -> int:
    from .pipeline import check_paths

    checked = check_paths(args.paths)
    _report(checked.diagnostics, len(checked.files), args.format, {"deployments": [d.name for d in checked.deployments]})
    return EXIT_PROBLEMS if _failed(checked.diagnostics, args.strict) else EXIT_OK


def cmd_render(args) -> int:
    from .load import did_you_mean
    from .pipeline import check_paths
    from .render import render, write

    checked = check_paths([args.deployments])
    by_name = {d.name: d for d in checked.deployments}
    unknown = [n for n in args.names if n not in by_name]
    if unknown and checked.ok:
        for name in unknown:
            hint = did_you_mean(name, by_name) or f"known deployments: {', '.join(sorted(by_name)) or 'none'}"
            print(f"deployer render: no deployment named {name!r} in {args.deployments}/ ({hint})", file=sys.stderr)
        return EXIT_USAGE
    if _failed(checked.diagnostics, args.strict):
        _report(checked.diagnostics, len(checked.files), args.format)
        print("nothing rendered: fix the errors above first", file=sys.stderr)
        return EXIT_PROBLEMS

    selected = [by_name[n] for n in args.names] if args.names else list(checked.deployments)
    results = []
    for deployment in selected:
        app = render(deployment, args.out)
        shown = _shown(app.path)
        if args.check:
            current = app.path.read_text(encoding="utf-8") if app.path.is_file() else None
            status = "up to date" if current == app.source else ("missing" if current is None else "out of date")
        else:
            status = "written" if write(app) else "unchanged"
        results.append({"name": app.name, "path": shown, "content_hash": app.content_hash, "status": status})

    if args.format == "json":
        print(render_json(checked.diagnostics, files=len(checked.files), rendered=results))
    else:
        _report(checked.diagnostics, len(checked.files), args.format) if checked.diagnostics else None
        for r in results:
            print(f"{r['status']:>11}  {r['path']}  ({r['name']}, {r['content_hash'][:12]})")
    stale = [r for r in results if r["status"] in ("missing", "out of date")]
    if stale:
        print(f"{len(stale)} rendered app(s) differ from their deployments; run `deployer render`", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _shown(path: Path) -> str:
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_posix()


def cmd_schema(args) -> int:
    from .schema import SCHEMA_PATH

    sys.stdout.write(SCHEMA_PATH.read_text(encoding="utf-8"))
    return EXIT_OK
