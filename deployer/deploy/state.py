"""Where the deployed state comes from: Modal (each app's tag), or, offline, a git ref; and what
each deployed version was rendered from (its git commit), so the plan can say what changes.

This is the one place that reads git history and the platform for `plan`, `apply` and `status`.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Sequence

from deployer.core import patterns
from deployer.core.budget import parse_budget_spent
from deployer.core.diagnostics import printable
from deployer.core.limits import CHECK_SECONDS, HISTORY_SECONDS, MAX_HISTORY_COMMITS
from deployer.deploy import commit_files
from deployer.deploy.commit_files import CommitFiles, RefError, ignored_files, make_parents
from deployer.deploy.desired import Desired, Project, desired, parse_tag
from deployer.deploy.git import git, git_root
from deployer.deploy.hot_add import (
    STAGE_FUNCTION,
    STATE_FILE,
    HotAddState,
    parse_state,
    state_text,
)
from deployer.deploy.platform import Platform, PlatformError, Version
from deployer.render.context import dynamic_adapters_volume
from deployer.render.templates import project_templates
from deployer.sources.folders import also_inside, refused_sources


@dataclass(frozen=True)
class Layout:
    """Where things are in a checkout: the repository root, and the deployments and output folders
    relative to it (the same relative places exist in every commit)."""

    root: Path
    deployments: Path
    out: Path

    @classmethod
    def of(cls, deployments: Path, out: Path) -> "Layout":
        deployments = Path(os.path.abspath(deployments))
        root = git_root(deployments if deployments.is_dir() else deployments.parent)
        if root is None:
            raise RefError(f"{deployments} is not inside a git repository")
        root = root.resolve()
        inside = _relative(deployments.resolve(), root)
        if inside is None:
            raise RefError(f"{deployments} is outside the git repository {root}")
        out_abs = Path(os.path.abspath(out))
        return cls(
            root,
            inside,
            _relative(out_abs.resolve() if out_abs.exists() else out_abs, root) or Path("build"),
        )


def _relative(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


class RefTrees:
    """Commits exported to temporary folders and their desired state, each computed once. The
    checks of all of them share one time budget for patterns (a plan may read many commits)."""

    def __init__(self, layout: Layout, project: Project):
        self.layout = layout
        self.project = project
        self._stack = ExitStack()
        self._cache: dict[tuple[str, frozenset[str] | None], tuple[str, dict[str, Desired]]] = {}
        self._ignored_deadline: float | None = (
            None  # set by the first listing: every commit of the plan shares it
        )

    def __enter__(self):
        self._stack.enter_context(patterns.budget(CHECK_SECONDS))
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def desired_at(
        self, ref: str, names: Collection[str] | None = None
    ) -> tuple[str, dict[str, Desired]]:
        """(full commit id, desired state of that commit: of the deployments `names`, or all).
        Raises RefError."""
        key = (ref, None if names is None else frozenset(names))
        if key not in self._cache:
            # Each export goes as soon as its desired state is known: a plan reads one commit per
            # version Modal recorded, and kilobytes in git can be 300 MB exported.
            with tempfile.TemporaryDirectory(prefix="deployer-ref-") as exported:
                self._cache[key] = self._desired_in(ref, Path(exported), key[1])
        return self._cache[key]

    @contextmanager
    def exported(
        self, ref: str, names: Collection[str]
    ) -> Iterator[tuple[str, dict[str, Desired]]]:
        """As desired_at, with the export kept on disk inside the block: an app rendered from it
        finds the local folders it uploads (to run one of its functions on Modal)."""
        with tempfile.TemporaryDirectory(prefix="deployer-ref-") as exported:
            yield self._desired_in(ref, Path(exported), frozenset(names))

    def _desired_in(
        self, ref: str, tree: Path, names: frozenset[str] | None
    ) -> tuple[str, dict[str, Desired]]:
        files = CommitFiles(self.layout.root, ref, tree)
        folder = tree / self.layout.deployments
        files.add([folder, folder.parent / "templates", folder.parent / "lock"])
        if not folder.is_dir():
            return files.commit, {}
        chosen = self._checked(folder, files.commit, names)
        local = sorted(
            {
                d.source.path
                for deployment in chosen
                for d in deployment.declared_sources
                if d.source.path
            }
        )
        written = files.add(local)
        borrowed = self._borrow_ignored(tree, chosen)
        with also_inside(borrowed):  # those files of the working tree, and no others
            if borrowed or written:
                chosen = self._checked(
                    folder, files.commit, names
                )  # adapter configs are among those files
            templates = project_templates(folder)
            return files.commit, desired(chosen, tree / self.layout.out, self.project, templates)

    @staticmethod
    def _checked(folder: Path, commit: str, names: frozenset[str] | None) -> list:
        """The deployments `names` (or all) of a ref. They are not validated, but one the deployer
        stopped reading (too many files or configs for one command) would compare as changed:
        that stops the plan."""
        from deployer.checks.pipeline import check_paths

        checked = check_paths([folder])
        if parse_budget_spent() or any(d.rule == "files.too-many" for d in checked.diagnostics):
            raise RefError(
                f"{commit[:7]} holds more deployment files or configs than the deployer "
                "reads in one command; `deployer validate` at that commit says which"
            )
        return [d for d in checked.deployments if names is None or d.name in names]

    def _borrow_ignored(self, tree: Path, deployments) -> list[Path]:
        """A commit has no copy of git-ignored files (weights, often): link the working tree's
        into the exported tree, taking them as unchanged, rather than seeing them all as deleted.
        Only into folders the checks accept that are folders here or in the working tree (not
        `path: ../.env`, nor the repository's root, whose .env and .venv are nobody's weights).
        Returns the working tree's files linked to."""
        tree = tree.resolve()
        inside = []
        for deployment in deployments:
            refused = refused_sources(deployment)
            for source in (d.source for d in deployment.declared_sources):
                relative = source.path and source not in refused and _relative(source.path, tree)
                if (
                    relative
                    and relative != Path(".")
                    and (
                        source.path.is_dir()
                        or (
                            not os.path.lexists(source.path)
                            and (self.layout.root / relative).is_dir()
                        )
                    )
                ):
                    inside.append(relative)
        borrowed = []
        if inside and self._ignored_deadline is None:
            self._ignored_deadline = time.monotonic() + commit_files.IGNORED_SECONDS
        for relative in ignored_files(self.layout.root, inside, self._ignored_deadline):
            target, original = tree / relative, self.layout.root / relative
            if os.path.lexists(target) or not original.is_file() or not make_parents(tree, target):
                continue  # the commit has something else there, or a link on the way
            try:
                target.symlink_to(original)
            except OSError:
                continue
            borrowed.append(original)
        return borrowed


def deployed_from_platform(platform: Platform) -> dict[str, Version]:
    return {app.name: app.current for app in platform.apps()}


def deployed_from_ref(
    trees: RefTrees, ref: str
) -> tuple[str, dict[str, Version], dict[str, Desired]]:
    """A git ref standing in for Modal: what it would have deployed, as if deployed."""
    commit, state = trees.desired_at(ref)
    return commit, {name: Version(0, d.tag, commit[:7]) for name, d in state.items()}, state


def previous_from_git(
    trees: RefTrees, deployed: dict[str, Version], wanted: Collection[str]
) -> tuple[dict[str, Desired], dict[str, str]]:
    """For each app of this project in `wanted` (those the plan updates), the desired state of
    the commit Modal recorded for it, when git still has that commit: the "before" of the plan's
    summary. Also, for those whose commit was not read, why."""
    by_commit: dict[str, list[str]] = {}
    for name in sorted(wanted):
        version = deployed.get(name)
        tag = parse_tag(version.tag) if version else None
        commit = version.commit.rstrip("*") if version else ""
        if tag and tag.project_id == trees.project.id and commit:
            by_commit.setdefault(commit, []).append(name)
    previous: dict[str, Desired] = {}
    unread: dict[str, str] = {}
    deadline = time.monotonic() + HISTORY_SECONDS
    for i, (commit, names) in enumerate(by_commit.items()):
        if i >= MAX_HISTORY_COMMITS:
            unread.update(
                dict.fromkeys(
                    names, f"a plan reads back at most {MAX_HISTORY_COMMITS} recorded commits"
                )
            )
            continue
        if time.monotonic() > deadline:
            unread.update(
                dict.fromkeys(
                    names, f"reading back recorded commits took over {HISTORY_SECONDS:.0f} s"
                )
            )
            continue
        try:
            _, state = trees.desired_at(commit, names)
        except RefError as exc:
            unread.update(
                dict.fromkeys(names, f"commit {printable(commit, 40)}: {printable(str(exc), 300)}")
            )
            continue
        previous.update({name: state[name] for name in names if name in state})
    return previous, unread


# -- the adapters volume of dynamic deployments ----------------------------------------------------


def hot_add_states(
    platform: Platform, want: dict[str, Desired], deployed: dict[str, Version], names: Sequence[str]
) -> tuple[dict[str, HotAddState], dict[str, str]]:
    """The state file in the adapters volume of each deployed dynamic deployment (of `names`, or
    all), and, per deployment whose file could not be used, why."""
    chosen = [
        n
        for n, d in sorted(want.items())
        if n in deployed and d.deployment.loads_adapters_dynamically and (not names or n in names)
    ]

    def read(name: str) -> tuple[str, HotAddState | None, str]:
        volume = dynamic_adapters_volume(name)
        try:
            text = platform.read_volume_file(volume, STATE_FILE)
        except PlatformError as exc:
            return name, None, f"{STATE_FILE} of volume {volume} could not be read: {exc}"
        if text is None:
            return name, None, ""
        try:
            return name, parse_state(text), ""
        except ValueError as exc:
            return name, None, f"{STATE_FILE} of volume {volume} is ignored: {exc}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(read, chosen))
    return (
        {name: state for name, state, _ in found if state is not None},
        {name: why for name, _, why in found if why},
    )


def record_state(
    platform: Platform, want: Desired, deployed_tag_hash: str, commit: str
) -> HotAddState:
    """Write into the adapters volume that `want` (from `commit`) serves on the version whose tag
    carries `deployed_tag_hash`. PlatformError if it cannot be written."""
    state = HotAddState(deployed_tag_hash, want.deploy_hash, want.adapter_ids, commit)
    platform.write_volume_file(
        dynamic_adapters_volume(want.deployment.name), STATE_FILE, state_text(state)
    )
    return state


def checkout_commit(folder: Path) -> str:
    """The checkout's commit, in full, as the state file records it: a * after it when files
    differ from it ("" outside git)."""
    head = git(folder, "rev-parse", "HEAD")
    if not head:
        return ""
    return head + ("*" if _uncommitted(folder) else "")


def _uncommitted(folder: Path) -> bool:
    return bool(git(folder, "status", "--porcelain", "--untracked-files=no"))


def no_hot_add_from(folder: Path) -> str | None:
    """Why a change applied from the checkout holding `folder` cannot be a hot-add, if it
    cannot: a failed hot-add, and a rollback of one, render the commit it was applied from, so
    that commit must hold what was staged."""
    if not git(folder, "rev-parse", "HEAD"):
        return "not a git checkout; a hot-add is undone by rendering its commit"
    if _uncommitted(folder):
        return "uncommitted changes; a hot-add is undone by rendering its commit"
    return None


_COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")


def trusted_commit(folder: Path, recorded: str) -> str:
    """The full id of `recorded` (a commit that Modal recorded for a version, or the state file
    for a hot-add, with Modal's * for uncommitted changes dropped), if the checkout holding
    `folder` may render it: a commit id (not a branch, tag or any other revision), of a commit
    that is HEAD or an ancestor of it. Both records can be written by anyone with the
    workspace's token; an ancestor of HEAD was reviewed on the way to the checkout. Raises
    RefError saying why not."""
    text = recorded.removesuffix("*")
    if not text:
        raise RefError("no git commit is recorded for it")
    if not _COMMIT_ID.fullmatch(text):
        raise RefError(f"{printable(text, 50)!r} is not a git commit id")
    full = git(folder, "rev-parse", "--verify", "--quiet", f"{text}^{{commit}}")
    if not full or not full.startswith(text):
        raise RefError(f"commit {text} is not in this repository (fetch it first?)")
    if git(folder, "merge-base", "--is-ancestor", full, "HEAD") is None:
        raise RefError(
            f"commit {text} is neither HEAD nor an ancestor of it; only commits on the "
            "branch checked out here are rendered"
        )
    return full


def stage_version(
    layout: Layout, project: Project, platform: Platform, commit: str, name: str
) -> Desired:
    """Sync deployment `name`'s adapters volume to what `commit` declares: that commit's app,
    rendered from its own files, runs its stage_adapters on Modal. Returns that desired state.
    Raises RefError (the commit cannot be read, or has no such deployment) or PlatformError."""
    from deployer.render.output import OutputProblem, write

    ref = trusted_commit(layout.root, commit)
    with RefTrees(layout, project) as trees, trees.exported(ref, [name]) as (full, state):
        if name not in state:
            raise RefError(f"commit {full[:7]} has no deployment {name!r}")
        earlier = state[name]
        try:
            write(earlier.app)
        except OutputProblem as exc:
            raise RefError(f"commit {full[:7]}: {exc}") from None
        platform.run(earlier.app.path, STAGE_FUNCTION)
        return earlier
