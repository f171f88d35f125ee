"""Modal behind one small interface: what `plan` reads and what `apply` changes.

`modal_cli.ModalCli` is the real implementation (the `modal` command line). Tests use a stateful
fake of Modal's servers (tests/fake_modal.py), both in-process and as a fake `modal` executable,
because Modal's servers cannot be reached from where the tests run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class PlatformError(Exception):
    """Modal refused or could not be reached; the message says which and is safe to print."""


@dataclass(frozen=True)
class Version:
    """One entry of an app's deployment history, newest first in lists."""

    number: int
    tag: str  # "" when deployed without one
    commit: (
        str  # the git commit Modal recorded ("" if none; a trailing * means uncommitted changes)
    )


@dataclass(frozen=True)
class DeployedApp:
    name: str
    current: Version  # the version serving now


class Platform(Protocol):
    where: str  # for messages, e.g. "Modal environment 'main'"

    def apps(self) -> list[DeployedApp]:
        """Apps in the deployed state, with the version serving now."""

    def history(self, name: str) -> list[Version]:
        """The app's deployments, newest first; [] if it was never deployed."""

    def deploy(self, app_file: Path, name: str, tag: str) -> str | None:
        """Deploy `app_file` as app `name` tagged `tag`; the web URL when Modal printed one."""

    def run(self, app_file: Path, function: str) -> None:
        """Run one function of `app_file` once, to completion (e.g. filling the weights cache)."""

    def rollback(self, name: str, version: int | None = None) -> None:
        """Serve an earlier version again (the previous one by default); a new history entry."""

    def stop(self, name: str) -> None:
        """Stop the app and its containers."""

    def web_url(self, name: str) -> str | None:
        """The URL of the app's web endpoint, None if it has none or is not deployed."""
