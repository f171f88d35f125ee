"""GPU snapshots turn on vLLM's /sleep and /wake_up routes: they must not be open to the internet.
(Sleep mode itself is in every vLLM release we have a flag catalog for; the flag check covers the
rest, as --enable-sleep-mode is among the rendered flags.)"""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic
from deployer.spec.model import Deployment

WHERE = ("cold_start", "gpu_snapshot")


def check_gpu_snapshot(deployment: Deployment) -> Iterable[Diagnostic]:
    if not deployment.cold_start.gpu_snapshot:
        return
    if not deployment.auth.proxy:
        # vLLM checks its API key only under /v1; the app's middleware asks for it everywhere, but a
        # key is what every API client holds: operator routes belong behind Modal's proxy auth.
        yield at(
            deployment,
            WHERE,
            "GPU snapshots turn on vLLM's dev-mode routes (/sleep, /wake_up, "
            "/server_info, /collective_rpc, weight updates), which vLLM's own API key "
            "check leaves open and which no API client should reach: anyone with the URL "
            "(with the app's key middleware, anyone with the key) could read the server's "
            "configuration, stop it or replace its weights",
            hint="use `auth: {proxy: true}` (Modal checks every route), or turn gpu_snapshot off",
            rule="cold-start.open-dev-routes",
            key=False,
        )
