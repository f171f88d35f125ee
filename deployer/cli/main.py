"""The `deployer` command: builds the parser from the command groups, runs the command chosen,
turns what goes wrong into a message and an exit code.

Exit codes: 0 success (warnings allowed unless --strict), 1 problems found, 2 usage error.
Heavy libraries are imported inside the commands that need them, so `--help` stays instant.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from typing import Sequence

from deployer.cli import (
    adapter,
    check,
    endpoints,
    fit,
    local,
    lock,
    new,
    plan_apply,
    prefetch,
    rollback,
    schema,
    status,
)
from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, UsageError, settle_folders
from deployer.core.budget import parse_budget

# In the order `deployer --help` lists their commands.
GROUPS = (
    check,
    adapter,
    new,
    lock,
    local,
    fit,
    plan_apply,
    status,
    rollback,
    prefetch,
    endpoints,
    schema,
)

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
  deployer adapter add chess-puzzle v2 --repo org/chess-lora@v2   add an adapter, comments kept
  deployer lock                             pin Hub sources to commits, image packages to versions
  deployer serve chess-puzzle --local       run its exact vLLM command on this machine
  deployer smoke chess-puzzle               health, models and one chat per model
  deployer fit chess-puzzle                 GPU memory breakdown, cost, cheapest GPU that fits
  deployer plan                             what apply would change on Modal, and why
  deployer apply --yes                      deploy what changed, smoke-test, roll back failures
  deployer status                           desired against deployed, URLs, cost per hour
  deployer endpoints                        OpenAI base URL, model ids and a client snippet
  deployer schema > deployment.schema.json  the JSON Schema, for editors and other tools
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployer",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def _version() -> str:
    from deployer import __version__

    return __version__


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A CI job's timeout or cancel sends SIGTERM: stop as on Ctrl-C, so temporary folders (a git
    # ref's export, gigabytes perhaps) are removed rather than left behind.
    previous = (
        signal.signal(signal.SIGTERM, _interrupt)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        settle_folders(args)
        with parse_budget():  # one for the whole command: a plan reads several commits
            return args.run(args)
    except UsageError as exc:
        for complaint in exc.complaints:
            print(f"deployer {args.command}: {complaint}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deployer: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print(
            f"deployer {args.command}: out of memory; the input is larger than the "
            "deployer reads (run with DEPLOYER_DEBUG=1 to see where)",
            file=sys.stderr,
        )
        if os.environ.get("DEPLOYER_DEBUG"):
            raise
        return EXIT_PROBLEMS
    except Exception as exc:  # never a traceback for the user; DEPLOYER_DEBUG=1 shows it
        from deployer.render.output import OutputProblem
        from deployer.render.templates import TemplateProblem

        if isinstance(exc, TemplateProblem):
            print(
                f"{exc}\n  hint: fix the template, or remove the project's templates/ "
                "folder to use the packaged one",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        if isinstance(exc, OutputProblem):
            print(f"deployer {args.command}: {exc}", file=sys.stderr)
            return EXIT_PROBLEMS
        if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
            name = str(exc.filename or "")
            print(
                f"deployer {args.command}: a path is too long for this system: "
                f"{name[:100]!r}{'…' if len(name) > 100 else ''}\n  hint: shorten the path "
                "(each name at most 255 bytes)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if os.environ.get("DEPLOYER_DEBUG"):
            raise
        print(
            f"deployer: internal error: {type(exc).__name__}: {exc}\n(this is a bug in "
            "deployer; run with DEPLOYER_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
