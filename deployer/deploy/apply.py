"""Carry out a plan on a platform: deploy, wait for the endpoint, smoke-test, roll back on failure.

Independent deployments go in parallel up to a bound; one failure does not stop the others.
Modal switches an app to a new version atomically, so every app ends at its old version or its
new one: a failed deploy changes nothing; a deploy whose smoke check fails (or is interrupted) is
rolled back to the version that served before, or stopped if it is the app's first.

A hot-add (deploy/hot_add.py) deploys nothing: the new app's stage_adapters syncs the adapters
volume, each new adapter is smoke-tested through the endpoint, and the state file records it; if
that fails, the version serving before syncs the volume back and the state file is left as it
was. A full deploy of a dynamic deployment syncs the volume to its own adapters after it passes,
so an adapter it removes is no longer resolved from there either.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

from deployer.core.diagnostics import printable
from deployer.core.limits import APP_LOG_LINE_CHARS, APP_LOG_LINES
from deployer.core.paths import linked_part, real
from deployer.deploy.commit_files import RefError
from deployer.deploy.desired import Desired, parse_tag
from deployer.deploy.hot_add import (
    MANIFEST_FILE,
    STAGE_FUNCTION,
    STATE_FILE,
    staged_folders,
)
from deployer.deploy.plan import (
    CONFLICT,
    CREATE,
    HOT_ADD,
    ORPHAN,
    UNCHANGED,
    UPDATE,
    Action,
    Plan,
)
from deployer.deploy.platform import Platform, PlatformError, endpoint_problem
from deployer.local.smoke import CheckResult
from deployer.render.context import dynamic_adapters_volume
from deployer.render.output import write

LOCK_FILE = ".deployer-apply.lock"
PREFETCH_FUNCTION = "download_weights"  # the rendered app's cache-filling function
DEFAULT_PARALLEL = 4
# Begins the part of a failed deploy's detail that quotes the end of its app's logs (or says why
# it cannot): a report can show it apart from the one-line summary before it.
LOGS_SECTION = "\nthe app's logs"

# Results, as shown in the summary table.
DEPLOYED, HOT_ADDED, ROLLED_BACK, STOPPED, FAILED, KEPT, SKIPPED, NOTHING = (
    "deployed",
    "hot-added",
    "rolled back",
    "stopped",
    "failed",
    "kept",
    "skipped",
    "unchanged",
)

Smoke = Callable[[Desired, str, threading.Event], list[CheckResult]]
# Smoke-tests a hot-add's adapters through the endpoint at the URL: each must answer from the
# folder it was just staged into (name → folder).
AdapterSmoke = Callable[[Desired, str, Mapping[str, str], threading.Event], list[CheckResult]]


@dataclass(frozen=True)
class AdapterVolumes:
    """What apply needs from its caller for dynamic deployments' adapters volumes."""

    smoke: AdapterSmoke | None  # None: --no-smoke
    # (app name, git commit) → sync the app's adapters volume to what that commit declares.
    restore: Callable[[str, str], object]
    # A recorded git commit → its full id, if restore may render it; else RefError saying why.
    restorable: Callable[[str], str]
    # (desired state, hash in the tag of the version it serves on) → write the state file.
    record: Callable[[Desired, str], object]


@dataclass(frozen=True)
class Outcome:
    name: str
    action: str  # the plan's action kind
    result: str  # one of the results above
    ok: bool
    detail: str = ""
    url: str | None = None
    version: int | None = None  # the version serving at the end, when known
    seconds: float = 0.0
    checks: tuple[CheckResult, ...] = ()


class LockError(Exception):
    pass


@contextmanager
def apply_lock(folder: Path) -> Iterator[None]:
    """One `apply` at a time per checkout: a second one stops at once instead of interleaving."""
    if link := linked_part(
        folder
    ):  # a committed `build` link would put the lock (and apps) anywhere
        raise LockError(
            f"{link} is a link to {real(link) or os.readlink(link)}; pass the real folder "
            "with --out"
        )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    try:  # O_NOFOLLOW: a lock file planted as a link must not truncate what it points at
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        raise LockError(
            f"cannot use the lock file {path}: {exc.strerror} (is it a link? remove it)"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a planted FIFO or device
        os.close(fd)
        raise LockError(f"the lock file {path} is not a plain file; remove it")
    with os.fdopen(fd, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise LockError(
                f"another `deployer apply` is running here (pid {holder}, lock {path}); "
                "wait for it to finish"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


def apply(
    plan: Plan,
    desired: dict[str, Desired],
    platform: Platform,
    smoke: Smoke | None,
    prune: bool = False,
    parallel: int = DEFAULT_PARALLEL,
    progress: Callable[[str], None] = lambda _: None,
    cancel: threading.Event | None = None,
    volumes: AdapterVolumes | None = None,
) -> list[Outcome]:
    """Run every action of `plan`; returns one outcome per action, in plan order. `volumes`:
    for hot-adds, and to sync dynamic deployments' adapters volumes after full deploys."""
    cancel = cancel or threading.Event()

    def run(action: Action) -> Outcome:
        if cancel.is_set() and action.kind in (CREATE, UPDATE, HOT_ADD, ORPHAN):
            return Outcome(
                action.name, action.kind, SKIPPED, False, "interrupted before it started"
            )
        if action.kind == CONFLICT:
            return Outcome(
                action.name,
                action.kind,
                FAILED,
                False,
                action.notes[0] if action.notes else "in conflict with another project",
                version=action.deployed.number if action.deployed else None,
            )
        if action.kind == UNCHANGED:
            return Outcome(
                action.name,
                action.kind,
                NOTHING,
                True,
                version=action.deployed.number if action.deployed else None,
            )
        if action.kind == ORPHAN:
            return (
                _prune(action, platform, progress)
                if prune
                else Outcome(
                    action.name, action.kind, KEPT, True, "orphan kept: `apply --prune` stops it"
                )
            )
        want = desired[action.name]
        if action.kind == HOT_ADD:
            return _hot_add(action, want, platform, volumes, progress, cancel)
        outcome = _deploy(action, want, platform, smoke, progress, cancel)
        if outcome.ok and want.deployment.loads_adapters_dynamically:
            return _sync_volume(outcome, want, platform, volumes, progress)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(run, plan.actions))


def _prune(action: Action, platform: Platform, progress) -> Outcome:
    try:
        platform.stop(action.name)
    except PlatformError as exc:
        return Outcome(action.name, action.kind, FAILED, False, f"could not stop it: {exc}")
    progress(f"{action.name}: stopped (no deployment file any more)")
    return Outcome(action.name, action.kind, STOPPED, True, "orphan stopped")


def _outcome_of(action: Action, version: int | None = None):
    """`done(result, ok, detail, url=None, version=..., checks=())`: the action's Outcome, timed
    from now."""
    start = time.monotonic()

    def done(
        result: str,
        ok: bool,
        detail: str,
        url: str | None = None,
        version: int | None = version,
        checks=(),
    ) -> Outcome:
        return Outcome(
            action.name,
            action.kind,
            result,
            ok,
            detail,
            url,
            version,
            time.monotonic() - start,
            tuple(checks),
        )

    return done


def _deploy(
    action: Action,
    want: Desired,
    platform: Platform,
    smoke: Smoke | None,
    progress,
    cancel: threading.Event,
) -> Outcome:
    name = action.name
    done = _outcome_of(action)

    write(want.app)
    if want.deployment.cold_start.prefetch and action.new_weights:
        progress(
            f"{name}: downloading {', '.join(action.new_weights)} into the cache volume "
            "before deploying"
        )
        try:
            platform.run(want.app.path, PREFETCH_FUNCTION)
        except PlatformError as exc:
            return done(
                FAILED,
                False,
                f"prefetch failed, so nothing was deployed ({_unchanged(action)}): {exc}",
                version=action.deployed.number if action.deployed else None,
            )
    progress(f"{name}: deploying {want.app.path} as {want.tag}")
    try:
        platform.deploy(want.app.path, name, want.tag)
    except PlatformError as exc:
        # Modal switches versions only after a whole deploy succeeds: nothing changed.
        return done(
            FAILED,
            False,
            f"deploy failed ({_unchanged(action)}): {exc}",
            version=action.deployed.number if action.deployed else None,
        )
    # Credentials go to the URL Modal's API records for the app, and only if it is Modal's own.
    url, url_problem = None, "Modal reports no web URL for it to smoke-test"
    try:
        url = platform.web_url(name)
    except PlatformError as exc:
        url_problem = f"deployed, but its URL could not be read to smoke-test it ({exc})"
    refused = endpoint_problem(url) if url else None
    if refused:
        url, url_problem = None, f"deployed, but {refused}; nothing was sent to it"
    version = _current_version(platform, name)
    if smoke is None:
        skipped = "deployed; smoke check skipped (--no-smoke)"
        return done(DEPLOYED, True, f"{skipped}; {refused}" if refused else skipped, url, version)
    if not url:
        return _undo(action, platform, progress, done, url_problem, None, ())
    progress(f"{name}: deployed v{version}; waiting for {url} and smoke-testing")
    checks = smoke(want, url, cancel)
    failed = [c for c in checks if not c.ok]
    if cancel.is_set() and (failed or not checks):
        return _undo(
            action,
            platform,
            progress,
            done,
            "interrupted before its smoke check passed",
            url,
            checks,
        )
    if failed:
        return _undo(
            action,
            platform,
            progress,
            done,
            "smoke check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            url,
            checks,
            # Read before the rollback: then the failed version's own lines are the last ones.
            logs=_logs_section(platform, name, progress),
        )
    progress(f"{name}: smoke check passed ({len(checks)} checks)")
    return done(DEPLOYED, True, f"{len(checks)} smoke checks passed", url, version, checks)


def _hot_add(
    action: Action,
    want: Desired,
    platform: Platform,
    volumes: AdapterVolumes | None,
    progress,
    cancel: threading.Event,
) -> Outcome:
    """Stage the new adapters into the running deployment's volume, smoke-test them, record it;
    no new app version. If they do not answer, the volume goes back to what served before."""
    name, version = action.name, action.deployed.number if action.deployed else None
    done = _outcome_of(action, version)  # no new version: the adapters join the one serving
    listed = ", ".join(action.hot_added)

    # What served before: the last hot-add's commit, else the deployed version's own. A failed
    # hot-add is undone by rendering it, so a hot-add starts only once it is known to be one
    # this checkout may render (anyone with the workspace's token can write what is recorded).
    recorded = (action.serving.commit if action.serving else "") or (
        action.deployed.commit if action.deployed else ""
    )
    where = STATE_FILE if action.serving else f"Modal, for v{version}"
    try:
        if volumes is None:
            raise RefError("apply was given no way to render the version serving before")
        before = volumes.restorable(recorded)
    except RefError as exc:
        return done(
            FAILED,
            False,
            f"nothing staged: a failed hot-add is undone by rendering what serves now, and the "
            f"commit recorded in {where} cannot be rendered: {exc}; a full deploy "
            f"(`deployer apply --replace {name}`) does not need it",
        )

    def undo(why: str, url: str | None = None, checks=()) -> Outcome:
        progress(f"{name}: {why}; taking {listed} out of the adapters volume again")
        try:
            volumes.restore(name, before)
        except (RefError, PlatformError) as exc:
            return done(
                FAILED,
                False,
                f"{why}; AND TAKING {listed} OUT FAILED, they may be served: {exc}",
                url,
                checks,
            )
        return done(
            ROLLED_BACK,
            False,
            f"{why}; {listed} taken out of the adapters volume again (v{version} serves as before)",
            url,
            checks,
        )

    write(want.app)
    progress(f"{name}: staging {listed} into volume {dynamic_adapters_volume(name)}; no restart")
    try:
        platform.run(want.app.path, STAGE_FUNCTION)
    except PlatformError as exc:
        return undo(f"staging failed: {exc}")
    if volumes.smoke is None:
        checked, url, checks = "smoke check skipped (--no-smoke)", None, []
    else:
        url, url_problem = _endpoint(platform, name)
        if url is None:
            return undo(url_problem)
        volume = dynamic_adapters_volume(name)
        try:  # where each was staged: vLLM's model card of it must name that folder
            folders = staged_folders(
                platform.read_volume_file(volume, MANIFEST_FILE), action.hot_added
            )
        except (PlatformError, ValueError) as exc:
            return undo(f"where the adapters were staged could not be read from {volume}: {exc}")
        progress(f"{name}: smoke-testing {listed} through {url}")
        checks = volumes.smoke(want, url, folders, cancel)
        failed = [c for c in checks if not c.ok]
        if cancel.is_set() and (failed or not checks):
            return undo("interrupted before its smoke check passed", url, checks)
        if failed:
            why = "smoke check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in failed)
            return undo(why, url, checks)
        checked = f"{len(checks)} smoke checks passed"
    detail = f"{listed} staged with no restart; {checked}"
    tag = parse_tag(action.deployed.tag if action.deployed else "")
    try:
        if tag is None:
            raise PlatformError("apply was given no way to record it")
        volumes.record(want, tag.hash_prefix)
    except PlatformError as exc:
        detail += f"; the state file could not be written ({exc}): the next plan offers it again"
    progress(f"{name}: {detail}")
    return done(HOT_ADDED, True, detail, url, checks)


def _sync_volume(
    outcome: Outcome, want: Desired, platform: Platform, volumes: AdapterVolumes | None, progress
) -> Outcome:
    """After a full deploy of a dynamic deployment: its adapters volume holds exactly the new
    version's adapters (an adapter it removed must not be resolved from there), and the state
    file says so."""
    name = want.deployment.name
    progress(f"{name}: syncing volume {dynamic_adapters_volume(name)} to its adapters")
    try:
        platform.run(want.app.path, STAGE_FUNCTION)
        tag = parse_tag(want.tag)
        if volumes is not None and tag is not None:
            volumes.record(want, tag.hash_prefix)
    except PlatformError as exc:
        return dataclasses.replace(
            outcome,
            ok=False,
            detail=f"{outcome.detail}; BUT its adapters volume was not synced, so adapters it "
            f"no longer declares may still be served: {exc} (run `modal run "
            f"{want.app.path}::{STAGE_FUNCTION}`)",
        )
    return outcome


def _endpoint(platform: Platform, name: str) -> tuple[str | None, str]:
    """(the app's URL, if credentials may go there; else None and why)."""
    try:
        url = platform.web_url(name)
    except PlatformError as exc:
        return None, f"its URL could not be read to smoke-test it ({exc})"
    if not url:
        return None, "Modal reports no web URL for it to smoke-test"
    if refused := endpoint_problem(url):
        return None, f"{refused}; nothing was sent to it"
    return url, ""


def _unchanged(action: Action) -> str:
    return f"v{action.deployed.number} still serves" if action.deployed else "nothing was created"


def _undo(
    action: Action, platform: Platform, progress, done, why: str, url, checks, logs: str = ""
) -> Outcome:
    """Roll back (or stop) a new version that must not serve; `logs` (a LOGS_SECTION, or "")
    ends the outcome's detail."""
    name = action.name
    try:
        if action.deployed is not None and action.deployed.number:
            progress(f"{name}: {why}; rolling back to v{action.deployed.number}")
            platform.rollback(name, action.deployed.number)
            return done(
                ROLLED_BACK,
                False,
                f"{why}; rolled back to v{action.deployed.number}{logs}",
                url,
                _current_version(platform, name),
                checks,
            )
        progress(f"{name}: {why}; stopping the new app")
        platform.stop(name)
        return done(
            STOPPED, False, f"{why}; first deploy, so the app was stopped{logs}", url, None, checks
        )
    except PlatformError as exc:
        return done(
            FAILED,
            False,
            f"{why}; AND UNDOING IT FAILED, the new version may still serve: {exc}{logs}",
            url,
            None,
            checks,
        )


def _logs_section(platform: Platform, name: str, progress) -> str:
    """The end of the app's logs, quoted on lines of their own: why a version failed (vLLM's
    error when it could not start) is there, and not in what the smoke check saw."""
    progress(f"{name}: reading the end of its logs")
    try:
        lines = platform.recent_logs(name, APP_LOG_LINES)
    except Exception as exc:  # the logs only explain the failure: reading them never stops the undo
        reason = str(exc) if isinstance(exc, PlatformError) else f"{type(exc).__name__}: {exc}"
        return f"{LOGS_SECTION} could not be read: {printable(reason, APP_LOG_LINE_CHARS)}"
    if not lines:
        return f"{LOGS_SECTION} have no lines yet"
    quoted = "".join(
        f"\n  {printable(line, APP_LOG_LINE_CHARS)}" for line in lines[-APP_LOG_LINES:]
    )
    return f"{LOGS_SECTION}, last lines:{quoted}"


def _current_version(platform: Platform, name: str) -> int | None:
    try:
        history = platform.history(name)
    except PlatformError:
        return None
    return history[0].number if history else None
