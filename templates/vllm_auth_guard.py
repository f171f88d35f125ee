"""Ask for vLLM's API key on every route but /health.

vLLM checks its key (VLLM_API_KEY) only on /v1 and a few other prefixes: /invocations (which
generates), /tokenize, /detokenize, /metrics and the rest answer anyone with the URL. vLLM loads
this ASGI middleware by its import path (--middleware deployer_auth_guard.RequireApiKey), so it sees
every request before vLLM's routes do. Only the standard library: the image holds vLLM and nothing
of the deployer's.

It never sees the key: the app gives it a random salt and the SHA-256 of salt and key
(DEPLOYER_AUTH_DIGEST), and leaves VLLM_API_KEY out of vLLM's environment, so a file vLLM is
tricked into serving (/proc/self/environ) holds no credential.
"""

import hashlib
import hmac
import json
import os

OPEN_PATHS = ("/health",)  # the liveness probe: it says only that the server is up

DIGEST_VARIABLE = "DEPLOYER_AUTH_DIGEST"


def _salt_and_digest() -> tuple:
    salt, _, digest = os.environ.get(DIGEST_VARIABLE, "").partition(":")
    try:
        salt, digest = bytes.fromhex(salt), bytes.fromhex(digest)
    except ValueError:
        salt = digest = b""
    if len(salt) < 16 or len(digest) != hashlib.sha256().digest_size:
        # Refuse to start rather than serve every route to anyone.
        raise RuntimeError(
            f"{DIGEST_VARIABLE} is not set: start vLLM from the rendered app, whose "
            "with_auth_guard() sets it from VLLM_API_KEY"
        )
    return salt, digest


SALT, KEY_DIGEST = _salt_and_digest()


class RequireApiKey:
    """Answers 401 (or closes a websocket) unless the request carries `Authorization: Bearer <key>`."""

    def __init__(self, app):
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
            hashlib.sha256(SALT + token).digest(), KEY_DIGEST
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
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})  # policy violation
        body = json.dumps({"error": "Unauthorized"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})
