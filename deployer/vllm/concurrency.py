"""How many requests one container takes at once, and how many Modal aims for before scaling out.

vLLM batches the requests it holds, up to `max-num-seqs` sequences per step: that is a
container's capacity, so Modal may hand it that many at once (`@modal.concurrent(max_inputs=)`).
The autoscaler's target is lower, so that a new container is already starting while the busy
ones still have room, rather than after requests begin to queue. `scaling.max_concurrent_inputs`
and `target_concurrent_inputs`, when written, are kept as written.

When vllm.args does not set `max-num-seqs`, vLLM picks it at start-up from the GPU: the values per
release are data (data/vllm_batch_defaults.json), with the vLLM source they were read from.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

from deployer.spec.model import Deployment, Gpu
from deployer.spec.schema import schema
from deployer.vllm import catalog
from deployer.vllm.fit import GIB, gpu_specs

BATCH_DEFAULTS_FILE = Path(__file__).parents[1] / "data" / "vllm_batch_defaults.json"
# The autoscaler aims at 3/4 of a container's capacity: the last quarter absorbs the requests
# that arrive while a new container starts (minutes on a cold start), instead of a queue.
TARGET_SHARE = (3, 4)


@dataclass(frozen=True)
class Concurrency:
    max_inputs: int
    target_inputs: int | None  # None: Modal scales on max_inputs (only when written so)
    source: str  # where max_inputs comes from, in words

    @property
    def decorator_arguments(self) -> dict[str, int]:
        """The keyword arguments of `@modal.concurrent`."""
        arguments = {"max_inputs": self.max_inputs}
        if self.target_inputs is not None:
            arguments["target_inputs"] = self.target_inputs
        return arguments


def concurrency(deployment: Deployment) -> Concurrency:
    """What the web function's `@modal.concurrent` says for `deployment`."""
    scaling = deployment.scaling
    if scaling.max_concurrent_inputs is not None:
        return Concurrency(
            scaling.max_concurrent_inputs,
            scaling.target_concurrent_inputs,
            "scaling.max_concurrent_inputs",
        )
    seqs, source = batch_capacity(deployment)
    # Modal takes at most the schema's maximum; beyond it, requests wait in vLLM's own queue.
    max_inputs = min(seqs, _max_concurrent_inputs())
    numerator, denominator = TARGET_SHARE
    return Concurrency(max_inputs, max(1, max_inputs * numerator // denominator), source)


def batch_capacity(deployment: Deployment) -> tuple[int, str]:
    """(max-num-seqs vLLM will run with, where that number comes from)."""
    args = dict(deployment.vllm.args)
    flags = catalog.load(deployment.vllm.version)
    flag = flags.lookup("max-num-seqs") if flags else None
    written = args.get("max-num-seqs")
    if _whole_number(written) and not (flag and flag.out_of_bounds(written)):
        return written, "vllm.args.max-num-seqs"  # anything else is the flag check's to report
    if flag is not None and _whole_number(flag.default):
        return flag.default, f"vLLM {deployment.vllm.version}'s default max-num-seqs"
    version, rule = _batch_rule(deployment.vllm.version)
    seqs = _by_gpu(rule, deployment.gpu)
    doubled = rule.get("doubled_by", {})
    if any(args.get(name) == value for name, value in doubled.items()):
        seqs *= 2
    return seqs, f"vLLM {version}'s max-num-seqs on {deployment.gpu.type}"


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _by_gpu(rule: dict, gpu: Gpu) -> int:
    spec = gpu_specs().get(gpu.type)
    memory_gib = spec.memory_bytes / GIB if spec else 0  # unknown GPU: vLLM's fallback too
    name = gpu.type.lower()
    for tier in rule["tiers"]:
        if memory_gib >= tier["min_gib"] and not any(
            part in name for part in tier["unless_name_has"]
        ):
            return tier["max_num_seqs"]
    return rule["otherwise"]


def _batch_rule(version: str) -> tuple[str, dict]:
    """(the release whose rule applies, that rule): the pinned one's, else the closest older
    release's, else the oldest recorded."""
    rules = _batch_defaults()
    if version in rules:
        return version, rules[version]
    known = sorted(rules, key=_release)
    older = [v for v in known if _release(v) <= _release(version)]
    chosen = older[-1] if older else known[0]
    return chosen, rules[chosen]


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@functools.cache
def _batch_defaults() -> dict[str, dict]:
    return json.loads(BATCH_DEFAULTS_FILE.read_text(encoding="utf-8"))["versions"]


@functools.cache
def _max_concurrent_inputs() -> int:
    return schema()["properties"]["scaling"]["properties"]["max_concurrent_inputs"]["maximum"]
