"""An ASGI middleware of the rendered app, driven as vLLM's server drives it: one request, with the
app behind it (vLLM's routes) standing in and recording what reached it."""

from __future__ import annotations

import asyncio


class Inner:
    """The app behind the middleware (vLLM's routes): records what reached it."""

    def __init__(self):
        self.reached = []

    async def __call__(self, scope, receive, send):
        self.reached.append(scope.get("path", scope["type"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def run_middleware(middleware_class, scope: dict) -> tuple[list, list]:
    """(what reached the app behind it, the messages sent back) for one request."""
    inner, sent = Inner(), []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware_class(inner)(scope, receive, send))
    return inner.reached, sent
