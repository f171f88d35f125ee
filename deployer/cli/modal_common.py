"""What the commands that compare with or change what runs on Modal share: the --env option,
the Modal platform and its credentials, progress messages, and the plan of desired against
deployed that plan, apply and status build.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deployer.cli.common import EXIT_PROBLEMS, UsageError

NO_CREDENTIALS = (
    "no Modal credentials (MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or `modal token new`)"
)


def modal_options() -> argparse.ArgumentParser:
    """--env, for the commands that talk to Modal (a parent parser)."""
    modal = argparse.ArgumentParser(add_help=False)
    modal.add_argument(
        "--env",
        "-e",
        default=None,
        metavar="ENV",
        help="Modal environment (default: the profile's default)",
    )
    return modal


def say(message: str) -> None:
    from deployer.core.diagnostics import printable

    print(printable(message), file=sys.stderr, flush=True)  # progress quotes servers' replies


def modal_platform(args):
    from deployer.deploy.platform.modal_cli import ModalCli

    return ModalCli(args.env)


def without_credentials(args) -> bool:
    """Whether Modal would refuse for want of a token; if so, says so as plan and apply do, rather
    than passing on Modal's own "Token missing" after the command has started its work."""
    from deployer.deploy.platform.modal_cli import has_credentials

    if has_credentials():
        return False
    print(f"deployer {args.command}: {NO_CREDENTIALS}", file=sys.stderr)
    return True


def _desired(args, checked):
    from deployer.deploy.desired import desired, project_for
    from deployer.render.templates import project_templates

    project = project_for(args.deployments)
    return project, desired(
        checked.deployments, args.out, project, project_templates(args.deployments)
    )


def _refuse_unknown(names, known, what: str = "deployment or deployed app") -> None:
    from deployer.core.text import did_you_mean

    if unknown := [n for n in names if n not in known]:
        listed = f"known: {', '.join(sorted(known)) or 'none'}"
        raise UsageError(
            *(
                f"no {what} named {name!r} ({did_you_mean(name, known) or listed})"
                for name in unknown
            )
        )


def build_plan(args, checked, live_only: bool = False):
    """(plan, desired, platform or None, exit code or None); a name that is neither a deployment
    nor a deployed app is a UsageError."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.plan import make_plan, to_update
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.platform.modal_cli import has_credentials
    from deployer.deploy.state import (
        Layout,
        RefTrees,
        deployed_from_platform,
        deployed_from_ref,
        hot_add_states,
        no_hot_add_from,
        previous_from_git,
    )

    project, want = _desired(args, checked)
    against = getattr(args, "against", None)
    fallback = None
    platform = None
    if against is None:
        if not has_credentials():
            fallback = NO_CREDENTIALS
        else:
            platform = modal_platform(args)
            try:
                deployed = deployed_from_platform(platform)
            except PlatformError as exc:
                fallback, platform = f"could not read Modal: {exc}", None
        if fallback:
            if live_only:
                print(f"deployer {args.command}: {fallback}", file=sys.stderr)
                return None, want, None, EXIT_PROBLEMS
            base = os.environ.get("GITHUB_BASE_REF")
            against = f"origin/{base}" if base else "HEAD"
            fallback += f"; comparing with what git ref {against} would deploy instead"
    try:
        layout = Layout.of(args.deployments, args.out)
    except RefError as exc:
        if against is not None:
            print(f"deployer {args.command}: cannot compare with {against}: {exc}", file=sys.stderr)
            return None, want, None, EXIT_PROBLEMS
        layout = None
    previous: dict = {}  # not in git: nothing says what the deployed versions were rendered from
    unread: dict = {}
    states: dict = {}  # hot-adds recorded in dynamic deployments' adapters volumes
    unusable: dict = {}
    if platform is not None:
        states, unusable = hot_add_states(platform, want, deployed, args.names)
    where = platform.where if platform else ""
    if layout is not None:
        with RefTrees(layout, project) as trees:
            try:
                if against is not None:
                    commit, deployed, previous = deployed_from_ref(trees, against)
                    where = f"git ref {against} ({commit[:7]})"
                else:
                    previous, unread = previous_from_git(
                        trees, deployed, to_update(want, deployed, args.names)
                    )
            except RefError as exc:
                print(f"deployer {args.command}: {exc}", file=sys.stderr)
                return None, want, None, EXIT_PROBLEMS
    _refuse_unknown(args.names, set(want) | set(deployed))
    replace = getattr(args, "replace", [])
    _refuse_unknown(replace, set(want), what="deployment")
    if args.names and (outside := [n for n in replace if n not in args.names]):
        raise UsageError(
            f"--replace {outside[0]}: not among the deployments named ({', '.join(args.names)}); "
            "name it too"
        )
    result = make_plan(
        want,
        deployed,
        previous,
        project,
        where,
        args.names,
        fallback,
        replace,
        unread,
        states,
        no_hot_add_from(Path(args.deployments)),
    )
    if unusable:
        from dataclasses import replace as with_fields

        notes = tuple(f"{name}: {why}" for name, why in sorted(unusable.items()))
        result = with_fields(result, notes=result.notes + notes)
    return result, want, platform, None
