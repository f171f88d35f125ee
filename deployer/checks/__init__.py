"""Semantic checks: what the schema cannot express. Each check is a function of deployments to
diagnostics, placed at the YAML that must change."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

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


def run_checks(deployments: Sequence[Deployment]) -> list[Diagnostic]:
    found: list[Diagnostic] = list(names.check_unique_app_names(deployments))
    for deployment in deployments:
        own = [d for check in PER_DEPLOYMENT for d in check(deployment)]
        found.extend(accept.apply_acceptances(deployment, own))
    return found
