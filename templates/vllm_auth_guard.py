"""Ask for vLLM's API key on every route but /health.

vLLM checks its key (VLLM_API_KEY) only on /v1 and a few other prefixes: /invocations (which
generates), /tokenize, /detokenize, /metrics and the rest answer anyone with the URL. vLLM loads
this ASGI middleware by its import path (--middleware deployer_auth_guard.RequireApiKey), so it sees
every request before vLLM's routes do. Only the standard library: the image holds vLLM and nothing
of the deployer's.

It never sees the key: the app gives it a random salt and the SHA-256 of salt and key
(DEPLOYER_AUTH_DIGEST), and leaves VLLM_API_KEY out of vLLM's environment, so a file vLLM is
tricked into serving (/proc/self/environ) holds no credential.

CloseAdapterRoutes, for deployments that load adapters dynamically, refuses the routes through which
vLLM's runtime LoRA updating loads or unloads any folder a caller names. It needs no API key, so
RequireApiKey's digest is read only when vLLM looks that class up (`auth: none` imports the module
too).
"""

import hashlib
import hmac
import json
import os

OPEN_PATHS = ("/health",)  # the liveness probe: it says only that the server is up

DIGEST_VARIABLE = "DEPLOYER_AUTH_DIGEST"


def _salt_and_digest(variable: str, set_by: str) -> tuple:
    salt, _, digest = os.environ.get(variable, "").partition(":")
    try:
        salt, digest = bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        salt = digest = b""
    if len(salt) < 16 or len(digest) != hashlib.sha256().digest_size:
        # Refuse to start rather than serve every route to anyone.
        raise RuntimeError(
            f"{variable} is not set: start vLLM from the rendered app, whose {set_by} sets it"
        )
    return salt, digest


def __getattr__(name: str):
    """RequireApiKey, made when vLLM first looks it up (`--middleware`): only then is its digest
    needed, and vLLM then fails to start at once if it is missing."""
    if name == "RequireApiKey":
        salt, digest = _salt_and_digest(DIGEST_VARIABLE, "with_auth_guard() from VLLM_API_KEY")
        guard = type("RequireApiKey", (_RequireApiKey,), {"SALT": salt, "KEY_DIGEST": digest})
        globals()[name] = guard
        return guard
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RequireApiKey:
    """Answers 401 (or closes a websocket) unless the request carries `Authorization: Bearer <key>`."""

    SALT = KEY_DIGEST = None  # set on the class vLLM gets (see __getattr__)

    def __init__(self, app):
        if self.KEY_DIGEST is None:
            raise RuntimeError("use RequireApiKey, which holds the API key's digest")
        self.app = app

    @staticmethod
    def preflight(scope) -> bool:
        """A CORS preflight, which browsers send without credentials and vLLM's CORS middleware
        answers itself. Not any OPTIONS request: the /metrics mount answers those with metrics."""
        names = {name.lower() for name, _ in scope.get("headers", [])}
        return (
            scope.get("method") == "OPTIONS"
            and b"origin" in names
            and b"access-control-request-method" in names
        )

    def authorized(self, headers) -> bool:
        # The first Authorization header decides, as in vLLM's own check.
        value = next((v for name, v in headers if name.lower() == b"authorization"), b"")
        scheme, _, token = value.partition(b" ")
        # Digests are compared, so the time taken says nothing about the key or its length.
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            hashlib.sha256(self.SALT + token).digest(), self.KEY_DIGEST
        )

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] not in ("http", "websocket")
            or scope["path"] in OPEN_PATHS
            or self.preflight(scope)
        ):
            return await self.app(scope, receive, send)
        if self.authorized(scope.get("headers", [])):
            return await self.app(scope, receive, send)
        await _refuse(scope, send, 401, "Unauthorized", [(b"www-authenticate", b"Bearer")])


async def _refuse(scope, send, status: int, error: str, headers=()) -> None:
    if scope["type"] == "websocket":
        return await send({"type": "websocket.close", "code": 1008})  # policy violation
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ## Closed to every caller: vLLM's routes that load or unload an adapter from a path

# VLLM_ALLOW_RUNTIME_LORA_UPDATING, which dynamic loading needs, also opens these: vLLM's own
# (/v1/load_lora_adapter, /v1/unload_lora_adapter) and the SageMaker ones it registers beside them
# (POST /adapters, DELETE /adapters/{name}). Adapters reach vLLM only through the staged folder.
CLOSED_ROUTES = ("/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/adapters")
# The one door left: the app's own runtime unloads an adapter whose staged copy changed or went
# away, with a random token of its container's; this variable holds a salt and its salted SHA-256.
UNLOAD_DIGEST_VARIABLE = "DEPLOYER_UNLOAD_DIGEST"
UNLOAD_TOKEN_HEADER = b"x-deployer-unload-token"
UNLOAD_ROUTE = "/v1/unload_lora_adapter"


def _route(path: str) -> str:
    """`path` as routing could match it: any case, repeated or trailing slashes ignored."""
    return "/" + "/".join(part for part in path.lower().split("/") if part)


class CloseAdapterRoutes:
    """Answers 403 on the adapter routes (any method, case or trailing slash), for every caller,
    API key or not; but for POST /v1/unload_lora_adapter carrying the runtime's unload token."""

    def __init__(self, app):
        self.app = app
        try:
            self.salt, self.digest = _salt_and_digest(UNLOAD_DIGEST_VARIABLE, "runtime")
        except RuntimeError:
            self.salt = self.digest = None  # no token then: every adapter route stays closed

    @staticmethod
    def closed(path: str) -> bool:
        route = _route(path)
        return any(route == closed or route.startswith(closed + "/") for closed in CLOSED_ROUTES)

    def internal_unload(self, scope) -> bool:
        if self.digest is None or scope.get("method") != "POST":
            return False
        if _route(scope["path"]) != UNLOAD_ROUTE:
            return False
        headers = scope.get("headers", [])
        token = next((v for name, v in headers if name.lower() == UNLOAD_TOKEN_HEADER), b"")
        return hmac.compare_digest(hashlib.sha256(self.salt + token).digest(), self.digest)

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] not in ("http", "websocket")
            or not self.closed(scope["path"])
            or self.internal_unload(scope)
        ):
            return await self.app(scope, receive, send)
        await _refuse(scope, send, 403, "Forbidden: adapters are staged by the deployer")
