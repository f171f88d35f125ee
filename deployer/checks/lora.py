"""LoRA limits: every adapter must fit the --max-lora-rank, --max-loras and --max-cpu-loras vLLM
starts with; otherwise vLLM refuses to load it after a full cold start."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import AdapterConfig, Deployment, UnknownConfig
from deployer.vllm import catalog
from deployer.vllm.argv import (
    VLLM_DEFAULT_MAX_LORA_RANK,
    derived_lora_flags,
    lora_rank_choices,
    needed_lora_rank,
)


def check_lora_limits(deployment: Deployment) -> Iterable[Diagnostic]:
    if not deployment.adapters and not deployment.loads_adapters_dynamically:
        return
    explicit = dict(deployment.vllm.args)
    for i, adapter in enumerate(deployment.adapters):
        if adapter.source.is_local and not adapter.source.path.is_dir():
            continue  # reported by the sources check
        if isinstance(adapter.config, UnknownConfig) and adapter.config.definite:
            yield at(
                deployment,
                ("adapters", i),
                f"adapter {adapter.name!r}: {adapter.config.reason}",
                hint="check the repo id and revision; vLLM could not load this adapter either",
                rule="sources.unreadable",
                key=False,
            )
        elif isinstance(adapter.config, UnknownConfig) and "max-lora-rank" not in explicit:
            # With max-lora-rank set explicitly, the user has taken the rank into their own hands.
            yield at(
                deployment,
                ("adapters", i),
                f"rank of adapter {adapter.name!r} is unknown ({adapter.config.reason}); "
                "it must fit vLLM's default --max-lora-rank "
                f"({VLLM_DEFAULT_MAX_LORA_RANK}) or vLLM fails at startup",
                hint="download it once (`hf download REPO --revision REV`) so its "
                "adapter_config.json is cached, or set vllm.args.max-lora-rank",
                rule="lora.unknown-rank",
                severity=Severity.WARNING,
                key=False,
            )
        elif isinstance(adapter.config, AdapterConfig) and adapter.config.rank > max(
            lora_rank_choices(deployment.vllm.version)
        ):
            yield at(
                deployment,
                ("adapters", i),
                f"adapter {adapter.name!r} has rank {adapter.config.rank}; vLLM serves "
                f"LoRA ranks up to {max(lora_rank_choices(deployment.vllm.version))}",
                hint="retrain with a smaller rank, or merge the adapter into the base model",
                rule="lora.rank-too-large",
                key=False,
            )

    rank = explicit.get("max-lora-rank")
    if rank is not None:
        path = ("vllm", "args", "max-lora-rank")
        choices = lora_rank_choices(deployment.vllm.version)
        # With a catalog, the flag check reports values vLLM rejects; without one, this does.
        if catalog.load(deployment.vllm.version) is None and (
            rank not in choices or isinstance(rank, bool)
        ):
            fitting = next((c for c in choices if isinstance(rank, int) and c >= rank), None)
            hint = (
                f"use {fitting}, the smallest allowed value above it"
                if fitting
                else f"allowed values: {', '.join(map(str, choices))}"
            )
            yield at(
                deployment,
                path,
                f"--max-lora-rank {rank!r} is not a value vLLM accepts",
                hint=hint,
                rule="lora.rank-choice",
                key=False,
            )
        needed = needed_lora_rank(deployment)
        if needed and isinstance(rank, int) and rank < needed[0]:
            yield at(
                deployment,
                path,
                f"--max-lora-rank {rank} is below the rank of adapter {needed[1]!r} "
                f"({needed[0]}); vLLM would refuse to load it",
                hint="remove max-lora-rank to have it derived from the adapters",
                rule="lora.rank-too-small",
                key=False,
            )

    max_loras = explicit.get("max-loras", derived_lora_flags(deployment).get("max-loras", 1))
    cpu_loras = explicit.get("max-cpu-loras")
    if isinstance(cpu_loras, int) and isinstance(max_loras, int) and cpu_loras < max_loras:
        yield at(
            deployment,
            ("vllm", "args", "max-cpu-loras"),
            f"--max-cpu-loras {cpu_loras} is below --max-loras {max_loras}; vLLM refuses to start",
            hint=f"raise it to at least {max_loras}, or remove it (it defaults to --max-loras)",
            rule="lora.cpu-loras",
            key=False,
        )
