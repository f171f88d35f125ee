"""rollback: serve an earlier version of a deployment again, or take out the adapters
hot-added onto the version serving; a dynamic deployment's adapters volume follows.
"""

from __future__ import annotations

import argparse
import sys

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, UsageError, folder_options
from deployer.cli.modal_common import modal_options, modal_platform, say, without_credentials


def register(commands) -> None:
    folders = folder_options()
    modal = modal_options()
    raw = argparse.RawDescriptionHelpFormatter

    rollback = commands.add_parser(
        "rollback",
        parents=[folders, modal],
        help="serve an earlier version of a deployment again",
        formatter_class=raw,
        description="Serve an earlier version again (`modal app rollback`): the previous one, or "
        "VERSION (e.g. v3). The rollback is a new version in the app's history; the "
        "next `apply` re-deploys the YAML's version unless the YAML is reverted too. For a "
        "dynamic deployment with adapters hot-added onto the serving version, NAME alone takes "
        "them out instead (no new version).",
        epilog="examples:\n  deployer rollback chess-puzzle\n  deployer rollback chess-puzzle v3",
    )
    rollback.add_argument("name", metavar="NAME", help="deployment (app) name")
    rollback.add_argument(
        "version",
        nargs="?",
        default=None,
        metavar="VERSION",
        help="version to serve, e.g. v3 (default: the previous one)",
    )
    rollback.set_defaults(run=cmd_rollback)


def cmd_rollback(args) -> int:
    import re

    from deployer.deploy.desired import parse_tag, project_for
    from deployer.deploy.platform import PlatformError

    version = None
    if args.version is not None:
        match = re.fullmatch(r"v?(\d+)", args.version)
        if not match:
            raise UsageError(
                f"{args.version!r} is not a version; use e.g. v3 (see "
                f"`modal app history {args.name}`)"
            )
        version = int(match.group(1))
    if without_credentials(args):
        return EXIT_PROBLEMS
    platform = modal_platform(args)
    try:
        history = platform.history(args.name)
        if not history:
            print(
                f"deployer rollback: {args.name!r} has never been deployed on {platform.where}",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        current = history[0]
        owner = parse_tag(current.tag)
        project = project_for(args.deployments)
        if owner is None or owner.project_id != project.id:
            whose = "another project's" if owner else "not the deployer's"
            print(
                f"deployer rollback: {args.name} on {platform.where} is {whose} (tag "
                f"{current.tag or 'none'}); this project ({project.name}) leaves it alone",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        dynamic, hot_add = _recorded_state(platform, args.name)
        if version is None and hot_add is not None and hot_add.is_hot_add:
            if hot_add.current_for(owner):
                return _undo_hot_add(args, platform, project, current, owner, hot_add)
        target = (
            version if version is not None else (history[1].number if len(history) > 1 else None)
        )
        if target is None:
            print(
                f"deployer rollback: {args.name} has only one version (v{current.number}); "
                "nothing to roll back to",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        if target not in {v.number for v in history}:
            print(
                f"deployer rollback: {args.name} has no version v{target} (versions: "
                f"{', '.join(f'v{v.number}' for v in history)})",
                file=sys.stderr,
            )
            return EXIT_PROBLEMS
        platform.rollback(args.name, target)
        now = platform.history(args.name)[0]
    except PlatformError as exc:
        print(f"deployer rollback: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"{args.name}: v{now.number} now serves what v{target} deployed (was v{current.number}).")
    if dynamic:  # its adapters volume follows the version
        synced = _sync_adapters_volume(args, platform, project, now)
        if synced is not None:
            print(f"deployer rollback: {synced}", file=sys.stderr)
            return EXIT_PROBLEMS
    print(
        "The YAML did not change: the next `deployer apply` deploys it again unless you "
        "revert it too."
    )
    return EXIT_OK


def _recorded_state(platform, name: str):
    """(whether app `name` has a state file in an adapters volume, i.e. is dynamic; the state it
    records, if it can be read). Raises PlatformError (Modal unreachable)."""
    from deployer.deploy.hot_add import STATE_FILE, parse_state
    from deployer.render.context import dynamic_adapters_volume

    volume = dynamic_adapters_volume(name)
    text = platform.read_volume_file(volume, STATE_FILE)
    if text is None:
        return False, None
    try:
        return True, parse_state(text)
    except ValueError as exc:  # rolling back the app still goes ahead
        say(f"{name}: {STATE_FILE} of volume {volume} is ignored: {exc}")
        return True, None


def _undo_hot_add(args, platform, project, current, owner, hot_add) -> int:
    """Roll back the hot-adds made since the serving version was deployed: its own commit's app
    syncs the adapters volume back (running containers unload what went), and the state file
    says the version serves its own adapters again. No new app version."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.state import Layout, record_state, stage_version

    added = ", ".join(n for n, _ in hot_add.adapters) or "none"
    try:
        layout = Layout.of(args.deployments, args.out)
        earlier = stage_version(layout, project, platform, current.commit, args.name)
        record_state(platform, earlier, owner.hash_prefix, current.commit)
    except (RefError, PlatformError) as exc:
        print(
            f"deployer rollback: cannot undo the hot-add on {args.name} v{current.number}: {exc}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    kept = ", ".join(a.name for a in earlier.deployment.adapters) or "none"
    print(
        f"{args.name}: hot-add undone with no restart; v{current.number} serves its own "
        f"adapters again ({kept}; were {added})."
    )
    print(
        "The YAML did not change: the next `deployer apply` hot-adds them again unless you "
        "revert it too."
    )
    return EXIT_OK


def _sync_adapters_volume(args, platform, project, now) -> str | None:
    """After an app rollback of a dynamic deployment: its adapters volume holds what the version
    now serving declares. Returns why not, if it could not."""
    from deployer.deploy.commit_files import RefError
    from deployer.deploy.desired import parse_tag
    from deployer.deploy.platform import PlatformError
    from deployer.deploy.state import Layout, record_state, stage_version

    tag = parse_tag(now.tag)
    try:
        layout = Layout.of(args.deployments, args.out)
        served = stage_version(layout, project, platform, now.commit, args.name)
        if tag is not None:
            record_state(platform, served, tag.hash_prefix, now.commit)
    except (RefError, PlatformError) as exc:
        return (
            f"{args.name}'s adapters volume was not synced to v{now.number}'s adapters, so "
            f"adapters it does not declare may still be served: {exc}"
        )
    return None
