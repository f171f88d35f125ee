"""`vllm.args` must not set what the deployer owns."""

from __future__ import annotations

from typing import Iterable

from ..argv import MANAGED_FLAGS
from ..diagnostics import Diagnostic
from ..model import Deployment
from ._at import at


def check_managed_flags(deployment: Deployment) -> Iterable[Diagnostic]:
    for name, _ in deployment.vllm.args:
        bare = name[3:] if name.startswith("no-") and name[3:] in MANAGED_FLAGS else name
        if bare in MANAGED_FLAGS:
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{bare} is set by the deployer and cannot be given in vllm.args",
                hint=f"remove it; it is controlled by {MANAGED_FLAGS[bare]}",
                rule="flags.managed",
            )
