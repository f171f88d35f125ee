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
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from deployer.core.diagnostics import printable
from deployer.core.limits import (
    HOT_ADD_RETRY_SECONDS,
    HOT_ADD_SMOKE_SECONDS,
    MAX_STATE_FILE_BYTES,
)
from deployer.deploy.desired import Tag
from deployer.local.smoke import (
    CheckResult,
    Connection,
    HttpError,
    SmokeSpec,
    check_chat,
    request,
    wait_healthy,
)
from deployer.vllm.argv import ADAPTER_MANIFEST_FILE, HOT_ADD_STATE_FILE

STAGE_FUNCTION = "stage_adapters"  # the rendered app's CPU function that syncs the folder
STATE_FILE = HOT_ADD_STATE_FILE  # at the root of the adapters volume
MANIFEST_FILE = ADAPTER_MANIFEST_FILE  # what stage_adapters staged, at the same root
# The names staging accepts (the runtime's STAGED_NAME): nothing else is ever an adapter there.
STAGED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HASH_CHARS = 64


def staged_folder(name: str, label: str) -> str:
    """The folder of the adapters volume that version `label` of adapter `name` is staged into,
    as the runtime's `staged_folder_name` names it (the deployer does not import the runtime):
    vLLM's model card of an adapter it loaded names that folder as its `root`."""
    return f"{name}@{hashlib.sha256(label.encode('utf-8')).hexdigest()[:12]}"


def staged_folders(manifest_text: str | None, names: Sequence[str]) -> dict[str, str]:
    """name → the folder each of `names` is staged into now, from the adapters volume's manifest
    (`deployer-adapters.json`) read just after staging. Its label is the runtime's (a Hub commit,
    or a digest of a folder's files), which the deployer does not compute. Raises ValueError
    saying what is wrong."""
    try:
        adapters = json.loads(manifest_text or "")["adapters"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{MANIFEST_FILE} is missing or not a manifest") from None
    folders = {}
    for name in names:
        entry = adapters.get(name) if isinstance(adapters, dict) else None
        label = entry.get("source") if isinstance(entry, dict) else None
        if not isinstance(label, str):
            raise ValueError(f"{MANIFEST_FILE} does not list adapter {name}")
        folders[name] = staged_folder(name, label)
        if entry.get("folder", folders[name]) != folders[name]:
            raise ValueError(
                f"{MANIFEST_FILE} puts adapter {name} in folder "
                f"{printable(str(entry.get('folder')), 80)}, not {folders[name]}"
            )
    return folders


@dataclass(frozen=True)
class HotAddState:
    """What `deployer-state.json` records after a hot-add."""

    deployed_hash: str  # the hash in the tag of the app version the adapters were added to
    desired_hash: str  # the deploy hash of the desired state that serves since
    adapters: tuple[tuple[str, str], ...]  # (name, what was staged) of every adapter it serves
    # The full id of the git commit the hot-add was applied from (a hot-add needs a clean
    # checkout: undoing it renders that commit); "" unknown.
    commit: str = ""

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
    for entry in adapters:
        if not STAGED_NAME.fullmatch(entry["name"]):
            raise ValueError(
                f"adapter name '{printable(entry['name'], 80)}' is not one staging accepts"
            )
        if printable(entry["source"]) != entry["source"]:
            raise ValueError(f"the source of adapter {entry['name']} holds control characters")
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
    folders: Mapping[str, str],
    health_timeout: float,
    progress: Callable[[str], None] = lambda _: None,
    cancel: threading.Event | None = None,
) -> list[CheckResult]:
    """The endpoint answers, then each adapter of `folders` (name → the folder it was just
    staged into) answers a chat request from that folder: vLLM's model card of it names the
    folder as `root`. A container sees a new adapter only after its next volume reload, and
    an updated one keeps answering from its earlier copy until then (its watch thread unloads
    it), so each is tried again until HOT_ADD_SMOKE_SECONDS have passed since the endpoint
    answered."""
    cancel = cancel or threading.Event()
    results = [wait_healthy(conn, health_timeout, progress, lambda: not cancel.is_set())]
    if not results[0].ok:
        return results
    deadline = time.monotonic() + HOT_ADD_SMOKE_SECONDS
    for name, folder in folders.items():
        while True:
            result = check_chat(conn, spec, name)
            if result.ok:
                result = _served_from(conn, name, folder, result)
            if result.ok or cancel.is_set():
                break
            if time.monotonic() >= deadline:
                waited = f"{result.detail} (still, {HOT_ADD_SMOKE_SECONDS:.0f} s after staging)"
                result = dataclasses.replace(result, detail=waited)
                break
            progress(f"{name} not served from {folder} yet ({result.detail}); trying again")
            cancel.wait(HOT_ADD_RETRY_SECONDS)
        results.append(result)
    return results


def _served_from(conn: Connection, name: str, folder: str, chat: CheckResult) -> CheckResult:
    """`chat` (which passed), failed if vLLM's model card of adapter `name` does not have the
    folder it was staged into as its root: an earlier copy answered."""
    try:
        status, body = request(conn, "GET", "/v1/models")
    except HttpError as exc:
        return dataclasses.replace(chat, ok=False, detail=str(exc))
    cards = body.get("data") if isinstance(body, dict) else None
    card = next(
        (c for c in cards or () if isinstance(c, dict) and c.get("id") == name),
        None,
    )
    root = card.get("root") if card else None
    if status == 200 and isinstance(root, str) and root.endswith(f"/{folder}"):
        return chat
    if status != 200:
        why = f"GET /v1/models → {status}"
    elif card is None:
        why = "it is not listed by /v1/models"
    else:
        why = f"it answered from {printable(str(root), 200)}, an earlier copy"
    return dataclasses.replace(chat, ok=False, detail=f"{why}; staged as {folder}")
