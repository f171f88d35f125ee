"""Smoke checks against a running OpenAI-compatible vLLM server (on Modal or on this machine).

One check per promise the deployment makes: the server is healthy; /v1/models lists the base and
every declared adapter, each adapter's parent being the base; every model answers a chat request
(matching its expected pattern when the deployment declares one); an undeclared model is refused
rather than silently served by the base; with auth, a request without credentials is refused.

Requests go through deployer.core.http (urllib: no extra dependency). Credentials are sent in
headers and never printed.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Callable

from deployer.core.diagnostics import printable
from deployer.core.http import ReplyTimeout, fetch
from deployer.core.limits import MAX_LEARNED_MODELS, MAX_REPLY_BYTES
from deployer.core.patterns import PatternTooSlow, any_match
from deployer.spec.model import Deployment, smoke_defaults

UNDECLARED_MODEL = "deployer-smoke-undeclared-model"
TOO_DEEP = "(a reply nested too deeply to show)"


@dataclass(frozen=True)
class SmokeSpec:
    """What to check: from a deployment, or discovered from the server for a bare URL."""

    base_model: str | None
    adapters: tuple[str, ...]
    prompt: str
    max_tokens: int
    expect: tuple[tuple[str, str], ...] = ()  # (model id, regular expression)
    guarded: bool = False  # the endpoint must refuse a request without credentials

    @classmethod
    def for_deployment(cls, deployment: Deployment) -> "SmokeSpec":
        smoke = deployment.smoke
        return cls(
            deployment.base_model.served_name,
            tuple(a.name for a in deployment.adapters),
            smoke.prompt,
            smoke.max_tokens,
            smoke.expect,
            not deployment.auth.is_public,
        )

    @classmethod
    def discover(cls) -> "SmokeSpec":
        """For a bare URL: the base and adapters are learned from /v1/models."""
        defaults = smoke_defaults()
        return cls(None, (), defaults["prompt"], defaults["max_tokens"])


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""
    output: str | None = None  # the model's reply, for chat checks


@dataclass(frozen=True)
class Connection:
    base_url: str  # the server root, without /v1
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # credentials: never shown
    request_timeout: float = 120.0


class HttpError(Exception):
    def __init__(self, status: int | None, message: str):
        super().__init__(message)
        self.status = status


def credentials(
    deployment: Deployment, environ, api_key_env: str = "VLLM_API_KEY", local: bool = False
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """The headers a deployment's endpoint needs, from the environment: (headers, problem).
    A local server has no Modal Secret or proxy: it needs a key only if one was set for it."""
    headers: list[tuple[str, str]] = []
    if deployment.auth.api_key_secret:
        if key := environ.get(api_key_env):
            headers.append(("Authorization", f"Bearer {key}"))
        elif not local:
            return (
                (),
                f"{deployment.name} requires an API key: set {api_key_env} to the "
                f"VLLM_API_KEY in Modal Secret {deployment.auth.api_key_secret!r}",
            )
    if deployment.auth.proxy and not local:
        key_id, secret = environ.get("MODAL_PROXY_KEY"), environ.get("MODAL_PROXY_SECRET")
        if not (key_id and secret):
            return (
                (),
                f"{deployment.name} uses Modal proxy auth: set MODAL_PROXY_KEY and "
                "MODAL_PROXY_SECRET to a proxy auth token",
            )
        headers += [("Modal-Key", key_id), ("Modal-Secret", secret)]
    return tuple(headers), None


def normalise_url(url: str) -> str:
    """Accept the server root or its /v1 base URL."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def redact(url: str) -> str:
    """The URL without any user:password@ it carries, for printing."""
    try:
        parts = urllib.parse.urlsplit(url)
    except (
        ValueError
    ):  # e.g. "http://[::1": drop anything up to an @ in what looks like the host part
        return re.sub(r"^([a-z]+://)[^/]*@", r"\1", url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def request(
    conn: Connection, method: str, path: str, body: dict | None = None, timeout: float | None = None
) -> tuple[int, object]:
    """(status, JSON or text) within `timeout` seconds in all: a server sending a byte every few
    seconds cannot hold the check (and an apply's lock)."""
    seconds = timeout or conn.request_timeout
    where = f"{redact(conn.base_url)}{path}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        response = fetch(
            conn.base_url + path,
            method=method,
            headers={"Content-Type": "application/json", **dict(conn.headers)},
            body=data,
            timeout=seconds,
            max_bytes=MAX_REPLY_BYTES,
        )
    except ReplyTimeout:
        raise HttpError(
            None, f"cannot reach {where}: no complete reply within {seconds:.0f} s"
        ) from None
    except ValueError as exc:  # http.client refuses a header value, quoting it: never print it
        what = (
            "a credential (API key or proxy token) contains a newline or another "
            "character HTTP headers cannot carry"
            if "header" in str(exc).lower()
            else f"{type(exc).__name__}: the URL cannot be used"
        )
        raise HttpError(None, f"cannot reach {where}: {what}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError among them
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise HttpError(None, f"cannot reach {where}: {reason}") from None
    return response.status, _json_or_text(response.body)


def _json_or_text(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except RecursionError:  # whether it is depends on how deep the caller's stack already is
        return TOO_DEEP
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]


def wait_healthy(
    conn: Connection,
    timeout: float,
    progress: Callable[[str], None] = lambda _: None,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 1.0,
) -> CheckResult:
    """Poll GET /health until it answers 200, the deadline passes, or `alive()` says the server died."""
    start = time.monotonic()
    last_report = start
    last_problem = "no answer yet"
    while True:
        elapsed = time.monotonic() - start
        if not alive():
            return CheckResult(
                "health", False, elapsed, f"server exited while starting ({last_problem})"
            )
        try:
            status, _ = request(
                conn, "GET", "/health", timeout=min(10.0, max(timeout - elapsed, 1.0))
            )
            if status == 200:
                return CheckResult("health", True, elapsed, "GET /health → 200")
            last_problem = f"GET /health → {status}"
        except (
            HttpError
        ) as exc:  # its text quotes the server (a status line, a reason): escaped once, here
            last_problem = (
                "not listening yet" if "refused" in str(exc) else printable(str(exc), 200)
            )
        if elapsed >= timeout:
            return CheckResult(
                "health", False, elapsed, f"not healthy after {timeout:.0f} s ({last_problem})"
            )
        if time.monotonic() - last_report >= 10:
            progress(
                f"waiting for {redact(conn.base_url)}/health ({elapsed:.0f} s of "
                f"{timeout:.0f} s): {last_problem}"
            )
            last_report = time.monotonic()
        time.sleep(interval)


def _timed(name: str, check: Callable[[], tuple[bool, str, str | None]]) -> CheckResult:
    start = time.monotonic()
    try:
        ok, detail, output = check()
    except HttpError as exc:
        ok, detail, output = False, str(exc), None
    return CheckResult(name, ok, time.monotonic() - start, detail, output)


def _error_text(body: object) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return _brief(body["error"].get("message", body["error"]))
    if isinstance(body, dict) and "detail" in body:
        return _brief(body["detail"])
    return _brief(body)


def _brief(value: object, limit: int = 200) -> str:
    """Server text for a one-line result: cut short, control characters escaped (a reply could
    clear the terminal or fake an `ok` line), and never a RecursionError from deep JSON."""
    try:
        text = value if isinstance(value, str) else str(value)
    except RecursionError:
        text = TOO_DEEP
    return printable(text, limit)


def check_models(conn: Connection, spec: SmokeSpec) -> tuple[CheckResult, SmokeSpec]:
    """Check /v1/models against the spec; for a bare URL, learn the base and adapters from it."""
    learned = spec

    def check():
        nonlocal learned
        status, body = request(conn, "GET", "/v1/models")
        if status != 200 or not isinstance(body, dict):
            return False, f"GET /v1/models → {status}: {_error_text(body)}", None
        data = body.get("data")
        listed = {
            m.get("id"): m.get("parent")
            for m in (data if isinstance(data, list) else [])
            if isinstance(m, dict) and isinstance(m.get("id"), str)
        }
        if spec.base_model is None:
            bases = [m for m, parent in listed.items() if parent is None]
            if len(bases) != 1:
                return (
                    False,
                    f"cannot tell the base model among {_brief(sorted(map(str, listed)))}",
                    None,
                )
            if len(listed) > MAX_LEARNED_MODELS:  # one chat request each, up to 120 s apiece
                return (
                    False,
                    f"the server lists {len(listed):,} models; a smoke run of a bare URL "
                    f"checks at most {MAX_LEARNED_MODELS:,} (name the deployment instead)",
                    None,
                )
            learned = SmokeSpec(
                bases[0],
                tuple(m for m, p in listed.items() if p is not None),
                spec.prompt,
                spec.max_tokens,
                spec.expect,
            )
        problems = []
        if learned.base_model not in listed:
            problems.append(f"base model {learned.base_model!r} is not listed")
        for adapter in learned.adapters:
            if adapter not in listed:
                problems.append(f"adapter {adapter!r} is not listed")
            elif listed[adapter] != learned.base_model:
                problems.append(
                    f"adapter {adapter!r} has parent {listed[adapter]!r}, expected "
                    f"{learned.base_model!r}"
                )
        extra = sorted(str(m) for m in set(listed) - {learned.base_model, *learned.adapters})
        note = f"; also listed: {_brief(', '.join(extra))}" if extra else ""
        if problems:
            return False, "; ".join(problems) + note, None
        return True, f"{len(learned.adapters) + 1} models listed with the right parents{note}", None

    result = _timed("models", check)
    return result, learned


def check_chat(conn: Connection, spec: SmokeSpec, model: str) -> CheckResult:
    expected = dict(spec.expect).get(model)

    def check():
        body = {
            "model": model,
            "messages": [{"role": "user", "content": spec.prompt}],
            "max_tokens": spec.max_tokens,
            "temperature": 0,
        }
        status, reply = request(conn, "POST", "/v1/chat/completions", body)
        if status != 200:
            return False, f"→ {status}: {_error_text(reply)}", None
        try:
            text = reply["choices"][0]["message"]["content"] or ""
            served_by = reply.get("model")
        except (KeyError, IndexError, TypeError, AttributeError):
            return False, f"unexpected reply: {_brief(reply)}", None
        if not isinstance(text, str):
            return False, f"reply content is not text: {_brief(text)}", None
        if served_by != model:
            return False, f"answered by {served_by!r}, not {model!r}", text
        if expected is not None:
            try:
                matched = any_match(expected, [text])
            except PatternTooSlow as slow:
                return False, f"matching {expected!r} against the reply {slow}", text
            if not matched:
                return False, f"reply does not match {expected!r}: {text[:80]!r}", text
        return (
            True,
            f"{len(text)} characters" + (f", matches {expected!r}" if expected else ""),
            text,
        )

    return _timed(f"chat {model}", check)


def check_undeclared_model_is_refused(conn: Connection, spec: SmokeSpec) -> CheckResult:
    def check():
        body = {
            "model": UNDECLARED_MODEL,
            "messages": [{"role": "user", "content": spec.prompt}],
            "max_tokens": 1,
        }
        status, reply = request(conn, "POST", "/v1/chat/completions", body)
        if status == 404 or (400 <= status < 500 and "does not exist" in _error_text(reply)):
            return True, f"→ {status}", None
        return False, f"an undeclared model got {status}, not 404: {_error_text(reply)}", None

    return _timed("undeclared model refused", check)


def check_credentials_required(conn: Connection, spec: SmokeSpec) -> CheckResult:
    """A route outside /v1 asked without credentials: vLLM's own key check covers only /v1, so
    this is what shows that the app's middleware (or Modal's proxy auth) guards the rest."""

    def check():
        status, reply = request(
            replace(conn, headers=()),
            "POST",
            "/tokenize",
            {"model": spec.base_model, "prompt": spec.prompt},
        )
        if status in (401, 403):
            return True, f"POST /tokenize without credentials → {status}", None
        return (
            False,
            f"POST /tokenize without credentials → {status}, not 401: the endpoint answers "
            f"anyone with its URL ({_error_text(reply)})",
            None,
        )

    return _timed("credentials required", check)


def run(
    conn: Connection,
    spec: SmokeSpec,
    health_timeout: float,
    progress: Callable[[str], None] = lambda _: None,
    alive: Callable[[], bool] = lambda: True,
) -> list[CheckResult]:
    results = [wait_healthy(conn, health_timeout, progress, alive)]
    if not results[0].ok:
        return results
    models, spec = check_models(conn, spec)
    results.append(models)
    if spec.base_model is None:
        return results
    for model in (spec.base_model, *spec.adapters):
        results.append(check_chat(conn, spec, model))
    results.append(check_undeclared_model_is_refused(conn, spec))
    if (
        spec.guarded and conn.headers
    ):  # without credentials to send (a local keyless server), nothing to compare
        results.append(check_credentials_required(conn, spec))
    return results
