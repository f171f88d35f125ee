"""Adapters added to a running dynamic deployment with no restart: the state file, the smoke check.

A dynamic deployment (`adapter_loading: dynamic`) has an adapters folder on a Modal Volume named
`<app name>-adapters`; its vLLM loads an adapter staged there on the first request that names it.
A change that only adds or updates adapters is then staged there by the new rendered app's
`stage_adapters` function (an ephemeral `modal run`: no new app version), and no container
restarts. Modal's tag still names the version deployed before, so `deployer-state.json` in the
same volume records what serves since: the tag it was added to (`deployed_hash`), the deploy hash
of the desired state that now serves (`desired_hash`), its adapters, and the commit it was
applied from. Plan trusts it only while the tag it names is the one serving: a full deploy
(a new tag) makes it stale, and renders the adapters into the app itself.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from deployer.core.limits import (
    HOT_ADD_RETRY_SECONDS,
    HOT_ADD_SMOKE_SECONDS,
    MAX_STATE_FILE_BYTES,
)
from deployer.deploy.desired import Tag
from deployer.local.smoke import CheckResult, Connection, SmokeSpec, check_chat, wait_healthy
from deployer.render.context import dynamic_adapters_volume

STAGE_FUNCTION = "stage_adapters"  # the rendered app's CPU function that syncs the folder
STATE_FILE = "deployer-state.json"  # at the root of the adapters volume
_HASH_CHARS = 64


def adapters_volume(app_name: str) -> str:
    """The Modal Volume holding a dynamic deployment's adapters folder (as its app names it)."""
    return dynamic_adapters_volume(app_name)


def is_dynamic(deployment) -> bool:
    """Whether `deployment` loads adapters staged after it started (`adapter_loading: dynamic`)."""
    return deployment.loads_adapters_dynamically


@dataclass(frozen=True)
class HotAddState:
    """What `deployer-state.json` records after a hot-add."""

    deployed_hash: str  # the hash in the tag of the app version the adapters were added to
    desired_hash: str  # the deploy hash of the desired state that serves since
    adapters: tuple[tuple[str, str], ...]  # (name, what was staged) of every adapter it serves
    commit: str = ""  # the git commit the hot-add was applied from ("" unknown; * uncommitted)

    @property
    def is_hot_add(self) -> bool:
        """False when it records a full deploy (the version serves its own adapters)."""
        return not self.desired_hash.startswith(self.deployed_hash)

    def current_for(self, tag: Tag | None) -> bool:
        """Whether it describes the version with `tag` (a full deploy since makes it stale)."""
        return tag is not None and self.deployed_hash == tag.hash_prefix


def state_text(state: HotAddState) -> str:
    return (
        json.dumps(
            {
                "deployed_hash": state.deployed_hash,
                "desired_hash": state.desired_hash,
                "adapters": [{"name": n, "source": s} for n, s in state.adapters],
                "commit": state.commit,
            },
            indent=1,
        )
        + "\n"
    )


def parse_state(text: str) -> HotAddState:
    """The state a volume holds. Raises ValueError saying what is wrong: the volume can be written
    by anyone with the workspace's token, so nothing in it is trusted beyond its shape."""
    if len(text) > MAX_STATE_FILE_BYTES:
        raise ValueError(f"it is over {MAX_STATE_FILE_BYTES:,} bytes")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"it is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    hashes = [data.get("deployed_hash"), data.get("desired_hash")]
    if not all(isinstance(h, str) and _is_hex(h) for h in hashes):
        raise ValueError("deployed_hash and desired_hash must be hexadecimal hashes")
    adapters = data.get("adapters")
    if not isinstance(adapters, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) and isinstance(a.get("source"), str)
        for a in adapters
    ):
        raise ValueError('adapters must be a list of {"name": ..., "source": ...}')
    commit = data.get("commit", "")
    return HotAddState(
        hashes[0],
        hashes[1],
        tuple((a["name"], a["source"]) for a in adapters),
        commit if isinstance(commit, str) else "",
    )


def _is_hex(text: str) -> bool:
    return 0 < len(text) <= _HASH_CHARS and all(c in "0123456789abcdef" for c in text)


def smoke_adapters(
    conn: Connection,
    spec: SmokeSpec,
    names: Sequence[str],
    health_timeout: float,
    progress: Callable[[str], None] = lambda _: None,
    cancel: threading.Event | None = None,
) -> list[CheckResult]:
    """The endpoint answers, then each of `names` answers a chat request. A container sees a new
    adapter only after its next volume reload, so each is tried again until HOT_ADD_SMOKE_SECONDS
    have passed since the endpoint answered."""
    cancel = cancel or threading.Event()
    results = [wait_healthy(conn, health_timeout, progress, lambda: not cancel.is_set())]
    if not results[0].ok:
        return results
    deadline = time.monotonic() + HOT_ADD_SMOKE_SECONDS
    for name in names:
        while True:
            result = check_chat(conn, spec, name)
            if result.ok or cancel.is_set():
                break
            if time.monotonic() >= deadline:
                waited = f"{result.detail} (still, {HOT_ADD_SMOKE_SECONDS:.0f} s after staging)"
                result = dataclasses.replace(result, detail=waited)
                break
            progress(f"{name} not served yet ({result.detail}); trying again")
            cancel.wait(HOT_ADD_RETRY_SECONDS)
        results.append(result)
    return results
