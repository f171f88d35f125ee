"""The `lock` command: resolve each deployment's Hub sources to commits and its image to a complete
package set, and write them to lock/ beside deployments/ (sources/lock.py says what it holds)."""

from __future__ import annotations

import argparse
import sys

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, UsageError, folder_options, select

LOCKED_HELP = (
    "fail (exit 1) unless lock/ pins every Hub source to a commit and every image's packages, "
    "for the YAML as it is now (for CI)"
)

DESCRIPTION = """\
Write lock/ beside deployments/: the commit each Hub source (base model, adapters) resolves to,
and each image's complete Python package set for Modal's platform, every package pinned with its
hashes (resolved by uv). Render then downloads at those commits and installs those packages.

Without --upgrade, what is locked and still matches the YAML is kept, and only what is missing
is resolved. --upgrade resolves branches, tags and packages again (of the deployments named, or
all) and prints what moved. If anything cannot be resolved, nothing is written."""

EPILOG = """\
examples:
  deployer lock                              lock what is not locked yet
  deployer lock --upgrade                    move every branch, tag and package set
  deployer lock --upgrade chess-puzzle       only chess-puzzle's (and its image's)
  deployer lock --allow-unresolved           where the Hub is out of reach: packages only
"""


def register(commands) -> None:
    lock = commands.add_parser(
        "lock",
        parents=[folder_options()],
        help="pin Hub sources to commits and image packages to versions, in lock/",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lock.add_argument(
        "--upgrade",
        nargs="*",
        default=None,
        metavar="NAME",
        help="resolve branches, tags and packages again: of the deployments NAME, or of all",
    )
    lock.add_argument(
        "--allow-unresolved",
        action="store_true",
        help="write the lock even if some Hub sources cannot be resolved, recording each as "
        "unresolved with why (validate warns about them, --locked refuses them)",
    )
    lock.set_defaults(run=cmd_lock)


def _resolve_commit(repo: str, revision: str) -> tuple[str | None, str]:
    from deployer.sources import hub

    found = hub.resolve_revision(repo, revision)
    return (None, found.reason) if isinstance(found, hub.Missing) else (found, "")


def _compile(inputs) -> str:
    from deployer.sources.packages import compile_requirements

    print(
        f"resolving the packages of image {inputs.key} ({', '.join(inputs.requirements)})",
        file=sys.stderr,
        flush=True,
    )
    return compile_requirements(inputs.requirements, inputs.python, inputs.platform)


def cmd_lock(args) -> int:
    from deployer.sources.lock import LockUnreadable, folder_for, read_lock, update, write_lock
    from deployer.sources.packages import PackageProblem

    checked, selected, code = select(args, [], tolerate="lock.")
    if selected is None:
        return code
    if args.upgrade:
        known = {d.name for d in selected}
        if unknown := [n for n in args.upgrade if n not in known]:
            raise UsageError(
                *(f"--upgrade {name}: no deployment named {name!r}" for name in unknown)
            )
    folder = folder_for(args.deployments)
    try:
        old = read_lock(folder)
    except LockUnreadable as exc:
        print(f"deployer lock: {exc}; writing it anew", file=sys.stderr)
        old = None
    try:
        result = update(
            old, selected, _resolve_commit, _compile, args.upgrade, args.allow_unresolved
        )
    except PackageProblem as exc:
        print(f"deployer lock: cannot resolve an image's packages: {exc}", file=sys.stderr)
        print("nothing written: the lock is unchanged", file=sys.stderr)
        return EXIT_PROBLEMS
    for line in result.unresolved:
        print(f"deployer lock: could not resolve {line}", file=sys.stderr)
    if result.unresolved and not args.allow_unresolved:
        print(
            "nothing written: the lock is unchanged (run where the Hub is reachable, set HF_TOKEN "
            "for private repos, or pass --allow-unresolved to record them as unresolved)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    try:
        changed = write_lock(folder, result.lock)
    except (LockUnreadable, OSError) as exc:
        print(f"deployer lock: cannot write {folder}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    for move in result.moves:
        print(f"moved  {move.describe()}")
    for change in result.package_changes:
        print(f"moved  {change}")
    where = folder.name
    for relative in changed:
        print(f"written  {where}/{relative}")
    if not changed:
        print(f"{where}/ is up to date")
    if result.unresolved:
        print(
            f"{len(result.unresolved)} Hub source(s) recorded as unresolved: they float until "
            "`deployer lock` runs where the Hub is reachable",
            file=sys.stderr,
        )
    return EXIT_OK
