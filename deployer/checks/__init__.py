"""Semantic checks: what the schema cannot express. Each check is a function of deployments to
diagnostics, placed at the YAML that must change.

A deployment whose file failed the schema is still checked, on the parts that passed: READS names
the top-level keys each check reads, and a check runs only when none of them failed (a failed part
is missing, or stands in as its default or a placeholder, so what a check found there would be
about a value nobody wrote)."""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from deployer.checks import (
    accept,
    auth,
    cold_start,
    compat,
    fit,
    flags,
    image,
    lock,
    lora,
    model_config,
    names,
    resources,
    smoke,
    sources,
    tokenizer,
)
from deployer.core.diagnostics import Diagnostic
from deployer.spec.model import Deployment

PER_DEPLOYMENT: tuple[Callable[[Deployment], Iterable[Diagnostic]], ...] = (
    names.check_adapter_names,
    sources.check_local_sources,
    flags.check_managed_flags,
    flags.check_flags_against_catalog,
    image.check_image_env,
    image.check_image_code,
    image.check_image_python,
    flags.check_code_flags,
    auth.check_auth,
    smoke.check_smoke_expectations,
    lora.check_lora_limits,
    compat.check_adapter_compatibility,
    model_config.check_model_config,
    model_config.check_other_models_in_flags,
    tokenizer.check_tokenizer_files,
    fit.check_gpu_fit,
    resources.check_gpu_count,
    resources.check_bfloat16_support,
    resources.check_scaling,
    cold_start.check_gpu_snapshot,
    lock.check_lock,
)


# The top-level keys each check reads (a model or adapter source reads base_model and adapters:
# `declared_sources`, `model_ids` and the lock hold both).
SOURCES = frozenset({"base_model", "adapters"})
READS: dict[Callable[[Deployment], Iterable[Diagnostic]], frozenset[str]] = {
    names.check_adapter_names: SOURCES,
    sources.check_local_sources: SOURCES,
    flags.check_managed_flags: frozenset({"vllm"}),
    flags.check_flags_against_catalog: frozenset({"vllm"}),
    image.check_image_env: frozenset({"image", "auth", "secrets"}),
    image.check_image_code: frozenset({"image"}),
    image.check_image_python: frozenset({"image", "vllm"}),
    flags.check_code_flags: SOURCES | {"image", "vllm"},
    auth.check_auth: frozenset({"auth", "vllm", "secrets"}),
    smoke.check_smoke_expectations: SOURCES | {"smoke"},
    lora.check_lora_limits: frozenset({"adapters", "vllm"}),
    compat.check_adapter_compatibility: SOURCES | {"vllm"},
    model_config.check_model_config: frozenset({"base_model"}),
    model_config.check_other_models_in_flags: frozenset({"vllm"}),
    tokenizer.check_tokenizer_files: SOURCES | {"vllm"},
    fit.check_gpu_fit: SOURCES | {"gpu", "vllm"},
    resources.check_gpu_count: frozenset({"base_model", "gpu", "vllm"}),
    resources.check_bfloat16_support: frozenset({"base_model", "gpu", "vllm"}),
    resources.check_scaling: frozenset({"scaling"}),
    cold_start.check_gpu_snapshot: frozenset({"cold_start", "auth", "gpu", "vllm"}),
    lock.check_lock: SOURCES,
}


def run_checks(
    deployments: Sequence[Deployment], failed: Mapping[str, frozenset[str]] | None = None
) -> list[Diagnostic]:
    """Every check on every deployment. `failed` maps a deployment's file to the top-level keys
    the schema refused in it; the checks that read any of them are skipped for it."""
    failed = failed or {}
    named = [d for d in deployments if "name" not in failed.get(d.file, ())]
    found: list[Diagnostic] = list(names.check_unique_app_names(named))
    for deployment in deployments:
        skipped = failed.get(deployment.file, frozenset())
        run = [check for check in PER_DEPLOYMENT if not READS[check] & skipped]
        own = [d for check in run for d in check(deployment)]
        settled = accept.apply_acceptances(deployment, own)
        if len(run) < len(PER_DEPLOYMENT):
            # An accepted rule whose check was skipped did not fire, yet is not gone.
            settled = [d for d in settled if d.rule != "accept.unused"]
        found.extend(settled)
    return found
