"""Modal behind one small interface: what `plan` reads and what `apply` changes.

`modal_cli.ModalCli` is the real implementation (the `modal` command line). Tests use a stateful
fake of Modal's servers (tests/fake_modal.py), both in-process and as a fake `modal` executable,
because Modal's servers cannot be reached from where the tests run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Where Modal serves web endpoints; credentials go to a derived URL only on this domain.
MODAL_WEB_DOMAIN = ".modal.run"
# Other hosts an operator trusts with credentials (comma-separated), read from the environment only:
# a deployment file comes from a pull request and must not choose where keys go.
ALLOW_ENDPOINT_HOST_ENV = "DEPLOYER_ALLOW_ENDPOINT_HOST"
# scheme://host[:port][/path] and nothing else: no user:password@, query, or the spaces and
# backslashes that two URL parsers may read as different hosts.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_PLAIN_URL = re.compile(
    rf"(https?)://({_LABEL}(?:\.{_LABEL})*)(?::[0-9]{{1,5}})?(?:/[^\s\\@?#]*)?",
    re.IGNORECASE | re.ASCII,
)


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

    def deploy(self, app_file: Path, name: str, tag: str) -> None:
        """Deploy `app_file` as app `name` tagged `tag`. Its URL is asked of `web_url`, never read
        from what the deploy printed: build logs are part of that, and carry the image's text."""

    def run(self, app_file: Path, function: str) -> None:
        """Run one function of `app_file` once, to completion (e.g. filling the weights cache)."""

    def rollback(self, name: str, version: int | None = None) -> None:
        """Serve an earlier version again (the previous one by default); a new history entry."""

    def stop(self, name: str) -> None:
        """Stop the app and its containers."""

    def recent_logs(self, name: str, lines: int) -> list[str]:
        """The app's last `lines` lines of logs (its containers' output and Modal's own messages),
        oldest first, as text without colours; [] if it has none. PlatformError if they cannot
        be read."""

    def read_volume_file(self, volume: str, path: str) -> str | None:
        """The text of file `path` in Modal Volume `volume`; None if the volume or the file does
        not exist. PlatformError if it cannot be read."""

    def write_volume_file(self, volume: str, path: str, text: str) -> None:
        """Write `text` as file `path` of Volume `volume` (which exists), replacing any file
        there."""

    def web_url(self, name: str) -> str | None:
        """The URL of the app's web endpoint, as Modal's API records it for the app's `serve`
        function; None if it has none or is not deployed. Check it with `endpoint_problem`
        before sending credentials to it."""


def allowed_hosts(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The hosts besides Modal's the operator allows, from $DEPLOYER_ALLOW_ENDPOINT_HOST."""
    listed = environ.get(ALLOW_ENDPOINT_HOST_ENV, "")
    return frozenset(host.strip().lower() for host in listed.split(",") if host.strip())


def endpoint_problem(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Why credentials must not go to `url`, a deployed app's URL the deployer found (None if
    they may): it must be https on Modal's domain, or on a host the operator allows (over http
    too, e.g. a stand-in on loopback). A URL the operator typed (`smoke --url`) is not checked."""
    match = _PLAIN_URL.fullmatch(url)
    scheme, host = (match.group(1).lower(), match.group(2).lower()) if match else ("", "")
    if host and host in allowed_hosts(environ):
        return None
    if scheme == "https" and host.endswith(MODAL_WEB_DOMAIN) and host != MODAL_WEB_DOMAIN[1:]:
        return None
    from deployer.local.smoke import redact

    shown = redact(url if len(url) <= 200 else url[:200] + "…")
    return (
        f"refusing to send credentials to {shown!r}: a deployed app's URL must be https:// on "
        f"Modal's domain (*{MODAL_WEB_DOMAIN}); to trust another host, set "
        f"{ALLOW_ENDPOINT_HOST_ENV}=HOST[,HOST…] in the environment"
    )
