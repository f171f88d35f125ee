"""Small files from Hugging Face Hub repos (configs), at a pinned revision: local cache first,
then the Hub itself unless offline.

Only small JSON files are read from the Hub, with one short request each (no retries with
back-off: validation must stay fast where the Hub is unreachable, and after the first connection
failure the rest of the run does not try again). Weights are never downloaded here.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from deployer.core.budget import ParseBudgetSpent, parsed_once
from deployer.core.http import Response, fetch
from deployer.core.limits import HUB_REQUEST_SECONDS, HUB_RUN_SECONDS, MAX_HUB_FILE_BYTES

_unreachable: str | None = None  # why the Hub could not be reached, once it could not
_spent = 0.0  # seconds of Hub requests so far, against HUB_RUN_SECONDS


@dataclass(frozen=True)
class HubFile:
    text: str
    where: str  # a cache path or a URL, for messages


@dataclass(frozen=True)
class Missing:
    """The file is not there: `definite` when the Hub said so (a finding), else unknown here."""

    reason: str
    definite: bool = False
    present: bool = False  # the file is there, but not JSON (or over the parse budget)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def read_text(repo: str, filename: str, revision: str | None) -> HubFile | Missing:
    global _spent
    from huggingface_hub.errors import HFValidationError

    at = f" at revision {revision}" if revision else ""
    try:
        cached = _cache_lookup(repo, filename, revision)
    except HFValidationError as exc:
        return Missing(f"{repo!r} is not a valid Hugging Face repo id: {exc}", definite=True)
    if cached is not None:
        try:
            return HubFile(cached.read_text(encoding="utf-8"), str(cached))
        except (OSError, UnicodeDecodeError) as exc:
            return Missing(f"cannot read the cached {cached}: {exc}", definite=True)
    if _offline():
        return Missing(f"{repo}{at} is not in the local Hugging Face cache (HF_HUB_OFFLINE is set)")
    if _unreachable:
        return Missing(
            f"{repo}{at} is not in the local Hugging Face cache, and the Hub is "
            f"unreachable ({_unreachable})"
        )
    if _spent >= HUB_RUN_SECONDS:
        return Missing(
            f"{repo}{at} is not in the local Hugging Face cache, and this run has spent "
            f"its {HUB_RUN_SECONDS:.0f} s of Hub requests (run again once the configs are "
            f"cached, e.g. `hf download {repo} {filename}`)"
        )
    url = (
        f"{_endpoint()}/{repo}/resolve/{urllib.parse.quote(revision or 'main', safe='')}/{filename}"
    )
    headers = _auth_headers()
    started = time.monotonic()
    try:
        return _fetch(
            url,
            headers,
            repo,
            filename,
            at,
            timeout=max(1.0, min(HUB_REQUEST_SECONDS, HUB_RUN_SECONDS - _spent)),
        )
    finally:
        _spent += time.monotonic() - started


def _fetch(
    url: str, headers: dict[str, str], repo: str, filename: str, at: str, timeout: float
) -> HubFile | Missing:
    global _unreachable
    try:
        response = fetch(url, headers=headers, timeout=timeout, max_bytes=MAX_HUB_FILE_BYTES)
    except (OSError, http.client.HTTPException) as exc:  # URLError and ReplyTimeout among them
        _unreachable = str(getattr(exc, "reason", exc))
        return Missing(
            f"{repo}{at} is not in the local Hugging Face cache, and the Hub is "
            f"unreachable ({_unreachable})"
        )
    if not 200 <= response.status < 300:
        return _http_missing(response, repo, filename, at)
    if response.truncated:
        return Missing(
            f"{url} is larger than {MAX_HUB_FILE_BYTES:,} bytes, too large for a config",
            definite=True,
        )
    try:
        return HubFile(response.body.decode("utf-8"), url)
    except UnicodeDecodeError as exc:
        return Missing(f"{url} is not UTF-8 text: {exc}", definite=True)


def _cache_lookup(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file in the local Hugging Face cache, if there; raises HFValidationError for a repo id
    huggingface_hub rejects."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def cached_path(repo: str, filename: str, revision: str | None) -> Path | None:
    """The file in the local Hugging Face cache, if there (never the Hub: for weights)."""
    from huggingface_hub.errors import HFValidationError

    try:
        return _cache_lookup(repo, filename, revision)
    except HFValidationError:
        return None


def read_json(
    repo: str, filename: str, revision: str | None
) -> tuple[dict | None, HubFile | Missing]:
    found = read_text(repo, filename, revision)
    if isinstance(found, Missing):
        return None, found
    try:
        data = parsed_once(
            ("hub", found.where), lambda: found.text.encode(), json.loads
        )  # (the parse budget holds for the Hub's files too)
    except ParseBudgetSpent as exc:
        return None, Missing(f"{found.where}: {exc}", definite=True, present=True)
    except (ValueError, RecursionError) as exc:
        return None, Missing(f"{found.where} is not valid JSON: {exc}", definite=True, present=True)
    return (data if isinstance(data, dict) else None), found


FULL_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve_revision(repo: str, revision: str | None) -> str | Missing:
    """The commit a branch or tag of `repo` points to now, from the Hub's API (never the local
    cache: a cached ref is as old as the last download). A full commit hash is its own answer."""
    global _spent
    revision = revision or "main"
    if FULL_COMMIT.fullmatch(revision):
        return revision
    if _offline():
        return Missing("HF_HUB_OFFLINE is set")
    if _unreachable:
        return Missing(f"the Hub is unreachable ({_unreachable})")
    if _spent >= HUB_RUN_SECONDS:
        return Missing(f"this run has spent its {HUB_RUN_SECONDS:.0f} s of Hub requests")
    url = f"{_endpoint()}/api/models/{repo}/revision/{urllib.parse.quote(revision, safe='')}"
    started = time.monotonic()
    try:
        response = fetch(
            url,
            headers=_auth_headers(),
            timeout=max(1.0, min(HUB_REQUEST_SECONDS, HUB_RUN_SECONDS - _spent)),
            max_bytes=MAX_HUB_FILE_BYTES,
        )
    except (OSError, http.client.HTTPException) as exc:
        _note_unreachable(exc)
        return Missing(f"the Hub is unreachable ({_unreachable})")
    finally:
        _spent += time.monotonic() - started
    if not 200 <= response.status < 300:
        return _http_missing(response, repo, "", f" at revision {revision}")
    try:
        commit = json.loads(response.body).get("sha") if not response.truncated else None
    except (ValueError, AttributeError):
        commit = None
    if not isinstance(commit, str) or not FULL_COMMIT.fullmatch(commit):
        return Missing(f"the Hub's answer at {url} names no commit")
    return commit


def _note_unreachable(exc: BaseException) -> None:
    global _unreachable
    _unreachable = str(getattr(exc, "reason", exc))


def _auth_headers() -> dict[str, str]:
    from huggingface_hub import get_token

    token = get_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http_missing(response: Response, repo: str, filename: str, at: str) -> Missing:
    global _unreachable
    # The Hub says what is missing in X-Error-Code; a missing or private repo both answer 401/404.
    code, status = response.headers.get("X-Error-Code", ""), response.status
    if code == "EntryNotFound":
        return Missing(f"{repo}{at} has no {filename}", definite=True)
    if code == "RevisionNotFound":
        return Missing(
            f"{repo} has no revision {at.removeprefix(' at revision ') or 'main'}", definite=True
        )
    if code == "GatedRepo" or status == 403:
        return Missing(
            f"{repo} is gated: accept its terms on the Hub and set HF_TOKEN", definite=True
        )
    if status == 429:  # rate limited: the rest of the run would be too
        _unreachable = "it answered 429 Too Many Requests"
        return Missing(
            f"{repo}{at} is not in the local Hugging Face cache, and the Hub is "
            "rate-limiting this machine (429)"
        )
    if code == "RepoNotFound" or status in (401, 404):
        return Missing(
            f"{repo} does not exist on the Hub, or is private (set HF_TOKEN to a token "
            "that can read it)",
            definite=True,
        )
    return Missing(f"the Hub answered {status} for {repo}{at}/{filename}")


def reset() -> None:
    """Forget that the Hub was unreachable, and the time spent on it (long-lived processes, tests)."""
    global _unreachable, _spent
    _unreachable = None
    _spent = 0.0
