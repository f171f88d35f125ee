"""The `adapter` commands: add an adapter to a deployment file, or remove one, in place.

Only the entry's lines change (spec/edit.py): comments, blank lines and every other line stay as
written. The edited text is checked as `validate` would check the file before anything is
written; a result with errors is refused and the file left as it was. Where a lock exists, the
deployment's entry in it is brought up to date as `deployer lock` would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, UsageError, folder_options

DESCRIPTION = """\
Add an adapter to deployments/NAME.yaml, or remove one, editing the file in place: every comment,
blank line and other line stays as written, and the new entry follows the style of the others.
The result is validated before it is written; if it has errors, nothing is written. Where lock/
exists, the deployment's pins are updated too (an adapter the Hub cannot be reached for is
recorded as unresolved, as `deployer lock --allow-unresolved` does)."""

EPILOG = """\
examples:
  deployer adapter add chess-puzzle chess-v2 --repo pilipolio/chess-puzzle-sft-qwen3-4b@v2
  deployer adapter add chess-puzzle local-try --path adapters/chess-v3
  deployer adapter remove chess-puzzle chess-v2
"""


def register(commands) -> None:
    adapter = commands.add_parser(
        "adapter",
        help="add an adapter to a deployment file, or remove one, keeping every comment",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = adapter.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        parents=[folder_options(out=False)],
        help="add an adapter from the Hub (--repo) or a local folder (--path)",
        description="Add the adapter ADAPTER (its model id) to deployments/NAME.yaml.",
    )
    add.add_argument("name", metavar="NAME", help="the deployment")
    add.add_argument("adapter", metavar="ADAPTER", help="the adapter's name: its model id")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--repo",
        metavar="REPO[@REV]",
        help="a Hugging Face repo, with a branch, tag or commit after @ (default: main)",
    )
    source.add_argument(
        "--path",
        type=Path,
        metavar="DIR",
        help="a local folder holding the adapter (written relative to the deployment file)",
    )
    add.set_defaults(run=cmd_add)
    remove = actions.add_parser(
        "remove",
        parents=[folder_options(out=False)],
        help="remove an adapter",
        description="Remove the adapter ADAPTER from deployments/NAME.yaml.",
    )
    remove.add_argument("name", metavar="NAME", help="the deployment")
    remove.add_argument("adapter", metavar="ADAPTER", help="the adapter's name")
    remove.set_defaults(run=cmd_remove)


def cmd_add(args) -> int:
    from deployer.spec.edit import EditRefused, Entry, add_adapter

    file = _deployment_file(args)
    if file is None:
        return EXIT_PROBLEMS
    if args.repo is not None:
        repo, at, revision = args.repo.partition("@")
        if not repo or (at and not revision):
            raise UsageError(f"--repo {args.repo}: write REPO or REPO@REVISION")
        entry = Entry(args.adapter, repo=repo, revision=revision or None)
        what = f"{repo}@{revision or 'main'}"
    else:
        if not args.path.is_dir():
            print(
                f"deployer adapter: {args.path}: no such folder; nothing written", file=sys.stderr
            )
            return EXIT_PROBLEMS
        written = os.path.relpath(os.path.abspath(args.path), os.path.abspath(file.parent))
        entry = Entry(args.adapter, path=Path(written).as_posix())
        what = f"the folder {entry.path}"
    if _defaults_declare_adapters(file):
        print(
            f"deployer adapter: {file.parent.name}/_defaults.yaml declares the adapters, and a "
            f"list in {file.name} would replace that list; add the adapter there, or copy the "
            "list into this file first; nothing written",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    try:
        edited = add_adapter(_read(file), entry)
    except EditRefused as exc:
        return _refused(file, str(exc))
    return _check_and_write(args, file, edited, f"added adapter {args.adapter!r} ({what}) to")


def cmd_remove(args) -> int:
    from deployer.spec.edit import EditRefused, remove_adapter

    file = _deployment_file(args)
    if file is None:
        return EXIT_PROBLEMS
    try:
        edited = remove_adapter(_read(file), args.adapter, _defaults_declare_adapters(file))
    except EditRefused as exc:
        return _refused(file, str(exc))
    return _check_and_write(args, file, edited, f"removed adapter {args.adapter!r} from")


def _deployment_file(args) -> Path | None:
    """deployments/NAME.yaml (or .yml, or the file whose `name:` is NAME); None, said why, when
    there is none."""
    from deployer.checks.pipeline import YAML_SUFFIXES
    from deployer.spec.load import DEFAULTS_FILE, load_file

    folder = args.deployments
    for suffix in YAML_SUFFIXES:
        if (folder / f"{args.name}{suffix}").is_file():
            return folder / f"{args.name}{suffix}"
    candidates = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    for file in candidates:
        if file.suffix in YAML_SUFFIXES and file.name != DEFAULTS_FILE:
            document, _ = load_file(file)
            data = document.data if document else None
            if isinstance(data, dict) and data.get("name") == args.name:
                return file
    print(
        f"deployer adapter: no deployment named {args.name!r} in {folder}/; nothing written",
        file=sys.stderr,
    )
    return None


def _read(file: Path) -> str:
    from deployer.spec.edit import EditRefused

    try:
        return file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise EditRefused("the file is not UTF-8; run `deployer validate`") from None


def _defaults_declare_adapters(file: Path) -> bool:
    from deployer.spec.load import DEFAULTS_FILE, load_file

    defaults = file.parent / DEFAULTS_FILE
    if not defaults.is_file():
        return False
    document, _ = load_file(defaults)
    return isinstance(document and document.data, dict) and "adapters" in document.data


def _refused(file: Path, why: str) -> int:
    print(f"deployer adapter: {file}: {why}; nothing written", file=sys.stderr)
    return EXIT_PROBLEMS


def _check_and_write(args, file: Path, edited: str, done: str) -> int:
    """Validate the edited text as the file, then write it and update the lock; or refuse."""
    import dataclasses

    from deployer.checks.pipeline import check_paths
    from deployer.core.diagnostics import render_text

    absolute = Path(os.path.abspath(file))
    checked = check_paths([file], replaced={absolute: edited.encode("utf-8")})
    errors = [d for d in checked.diagnostics if d.is_error]
    if errors or not checked.deployments:
        # Lines are the edited text's, which is not on disk: no excerpt of the file as it is.
        shown = [dataclasses.replace(d, file=f"{d.file} (edited)") for d in errors]
        print(render_text(shown), file=sys.stderr)
        print(
            f"deployer adapter: {file} would not validate with this change; nothing written",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    lock = _lock_update(file.parent, checked.deployments[0])
    if lock is False:
        return EXIT_PROBLEMS
    _write_atomically(file, edited)
    print(f"{done} {file}")
    if lock is not None:
        return _write_lock(file.parent, lock)
    return EXIT_OK


def _lock_update(deployments: Path, deployment, command: str = "adapter"):
    """The lock with this deployment's entry brought up to date (None: there is no lock; False:
    it cannot be updated, and the user was told why)."""
    from deployer.cli.lock import _compile, _resolve_commit
    from deployer.sources.lock import Lock, LockUnreadable, folder_for, read_lock, update
    from deployer.sources.packages import PackageProblem

    folder = folder_for(deployments)
    try:
        old = read_lock(folder)
    except LockUnreadable as exc:
        print(
            f"deployer {command}: {exc}; nothing written (run `deployer lock` to rewrite it)",
            file=sys.stderr,
        )
        return False
    if old is None:
        return None
    try:
        result = update(old, [deployment], _resolve_commit, _compile)
    except PackageProblem as exc:
        print(
            f"deployer {command}: cannot resolve the image's packages for the lock: {exc}; "
            "nothing written",
            file=sys.stderr,
        )
        return False
    for line in result.unresolved:
        print(
            f"deployer {command}: could not resolve {line}; recorded in the lock as unresolved "
            "until `deployer lock` runs where the Hub is reachable",
            file=sys.stderr,
        )
    return Lock(
        {**old.entries, **result.lock.entries},
        {**old.images, **result.lock.images},
        {**old.packages, **result.lock.packages},
    )


def _write_lock(deployments: Path, lock, command: str = "adapter") -> int:
    from deployer.sources.lock import LockUnreadable, folder_for, write_lock

    folder = folder_for(deployments)
    try:
        changed = write_lock(folder, lock)
    except (LockUnreadable, OSError) as exc:
        print(
            f"deployer {command}: the deployment was written, but not the lock: {exc} (run "
            "`deployer lock`)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    for relative in changed:
        print(f"written  {folder.name}/{relative}")
    return EXIT_OK


def _write_atomically(file: Path, text: str) -> None:
    """Replace `file` at once, keeping its permissions: a reader sees the old text or the new."""
    mode = file.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.chmod(tmp, mode)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
