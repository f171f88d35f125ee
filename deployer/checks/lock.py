"""The lock (sources/lock.py) against each deployment: what it does not pin, or pins as the YAML no
longer says, and Hub sources it records unresolved.

Warnings when the project keeps a lock; nothing when it keeps none (render then says what floats:
`floating_warning`). With `--locked` (`required`), every gap is an error, a missing lock too.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.sources.lock import LOCK_FOLDER, floating
from deployer.spec.locked import Gap, Locked
from deployer.spec.model import Deployment

FIX = f"run `deployer lock` and commit {LOCK_FOLDER}/"
FIX_UNRESOLVED = (
    f"run `deployer lock` where the Hub is reachable (with HF_TOKEN for private repos) and "
    f"commit {LOCK_FOLDER}/"
)


def check_lock(deployment: Deployment) -> Iterable[Diagnostic]:
    locked = deployment.lock
    if locked is None or not locked.exists:
        return []
    return lock_findings(deployment, required=False)


def lock_findings(deployment: Deployment, required: bool) -> list[Diagnostic]:
    """What the lock lacks for `deployment`: warnings, or errors when `required` (--locked)."""
    locked = deployment.lock or Locked(f"{LOCK_FOLDER}/sources.yaml", False)
    found: list[Diagnostic] = []
    if locked.problem:
        # One finding on the lock file itself, the same for every deployment (reported once).
        return [
            Diagnostic(
                locked.file,
                0,
                0,
                f"the lock cannot be read: {locked.problem}",
                hint=FIX,
                rule="lock.unreadable",
            )
        ]
    if not locked.exists:
        if required:
            found.append(
                at(
                    deployment,
                    ("name",),
                    f"{deployment.name} is not locked: there is no {locked.file}",
                    hint=FIX,
                    rule="lock.missing",
                    severity=Severity.ERROR,
                )
            )
        return found
    for gap in locked.missing:
        found.append(_missing(deployment, gap, required))
    for gap in locked.unresolved:
        found.append(_unresolved(deployment, gap, locked.file, required))
    return found


def _missing(deployment: Deployment, gap: Gap, required: bool) -> Diagnostic:
    message = f"{gap.what} {gap.why}" + (" (--locked)" if required else "")
    if required:
        return at(deployment, gap.yaml_path, message, FIX, rule="lock.missing")
    return at(
        deployment, gap.yaml_path, message, FIX, rule="lock.missing", severity=Severity.WARNING
    )


def _unresolved(deployment: Deployment, gap: Gap, file: str, required: bool) -> Diagnostic:
    message = f"{gap.what} is unresolved in {file}: {gap.why}" + (" (--locked)" if required else "")
    if required:
        return at(deployment, gap.yaml_path, message, FIX_UNRESOLVED, rule="lock.unresolved")
    return at(
        deployment,
        gap.yaml_path,
        message,
        FIX_UNRESOLVED,
        rule="lock.unresolved",
        severity=Severity.WARNING,
    )


def floating_warning(deployment: Deployment) -> Diagnostic | None:
    """For render in a project without a lock: what the rendered app leaves to chance."""
    if deployment.lock is not None and deployment.lock.exists:
        return None
    return at(
        deployment,
        ("name",),
        f"{deployment.name} is not locked: {', '.join(floating(deployment))} are whatever is "
        "newest when the image is built or a container starts",
        hint=FIX,
        rule="lock.missing",
        severity=Severity.WARNING,
    )


def require_lock(
    diagnostics: Sequence[Diagnostic], deployments: Sequence[Deployment]
) -> tuple[Diagnostic, ...]:
    """`--locked`: the lock's warnings become errors, and a deployment without a lock is one."""
    kept = [d for d in diagnostics if not d.rule.startswith("lock.")]
    for deployment in deployments:
        kept += lock_findings(deployment, required=True)
    return tuple(sorted(set(kept), key=lambda d: (d.file, d.line, d.column, d.message)))
