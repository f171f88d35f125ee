"""Adapter compatibility: what vLLM either refuses at startup (after a cold start) or, worse,
accepts while serving base-model output. Read from each adapter's adapter_config.json and the
base model's config and weight names."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.core.limits import SHOWN_MODULES
from deployer.core.paths import real
from deployer.core.patterns import PatternTooSlow, any_match, compile_error
from deployer.sources.folders import outside_repository
from deployer.spec.model import AdapterConfig, BaseModelInfo, Deployment

REQUIRED_FIELDS = (
    "r",
    "lora_alpha",
    "target_modules",
)  # vLLM's PEFTHelper refuses a config without them
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def _modules_to_save_allowed(version: str) -> tuple[str, ...]:
    """vLLM's PEFTHelper._validate_features: 0.11.2 accepts no modules_to_save at all; 0.32.0
    accepts only classification heads. (Read from both releases' vllm/lora/peft_helper.py.)"""
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    return ("classifier", "score") if parts >= (0, 32) else ()


def check_adapter_compatibility(deployment: Deployment) -> Iterable[Diagnostic]:
    base_info = (
        deployment.base_model.info
        if isinstance(deployment.base_model.info, BaseModelInfo)
        else None
    )
    for i, adapter in enumerate(deployment.adapters):
        config = adapter.config
        if not isinstance(config, AdapterConfig):
            continue
        path = ("adapters", i)

        def error(message: str, hint: str, rule: str) -> Diagnostic:
            return at(
                deployment,
                path,
                f"adapter {adapter.name!r}: {message}",
                hint=hint,
                rule=f"compat.{rule}",
                key=False,
            )

        missing = [f for f in REQUIRED_FIELDS if f not in config.raw]
        if missing:
            yield error(
                f"{Path(config.read_from).name} lacks {', '.join(missing)}, which vLLM requires",
                "re-save the adapter with PEFT (`model.save_pretrained`)",
                "missing-field",
            )
        if config.raw.get("use_dora"):
            yield error(
                "is a DoRA adapter (use_dora: true); vLLM does not serve DoRA",
                "train a plain LoRA adapter, or merge this one into the base model",
                "dora",
            )
        if config.raw.get("bias", "none") != "none" or config.raw.get("lora_bias"):
            yield error(
                "trains biases (bias: "
                f"{config.raw.get('bias')!r}{', lora_bias' if config.raw.get('lora_bias') else ''}); "
                "vLLM serves only adapters with bias 'none'",
                "retrain with bias='none', or merge the adapter into the base model",
                "bias",
            )
        saved = config.raw.get("modules_to_save") or []
        saved = [str(m) for m in saved] if isinstance(saved, list) else [str(saved)]
        extra = [m for m in saved if m not in _modules_to_save_allowed(deployment.vllm.version)]
        if extra:
            allowed = _modules_to_save_allowed(deployment.vllm.version)
            accepts = f"only {', '.join(allowed)}" if allowed else "none"
            yield error(
                f"saves full modules ({', '.join(extra)}); vLLM {deployment.vllm.version} "
                f"accepts {accepts} in modules_to_save",
                "merge the adapter into the base model, or retrain without modules_to_save",
                "modules-to-save",
            )
        if adapter.source.is_local and config.weights is None:
            yield error(
                "no adapter_model.safetensors or adapter_model.bin in "
                f"{adapter.source.written_path}",
                "copy the adapter's weights file next to its adapter_config.json",
                "no-weights",
            )

        mismatch = _base_mismatch(deployment, config)
        if mismatch:
            yield error(
                mismatch,
                "serve it on the base it was trained on, or retrain it on this one; vLLM "
                "would load it and produce base-model or garbage output",
                "base-mismatch",
            )
        if base_info is not None and base_info.tensors:
            try:
                unknown = _unknown_targets(config.target_modules, base_info)
            except PatternTooSlow as slow:
                yield at(
                    deployment,
                    path,
                    f"adapter {adapter.name!r}: target_modules pattern "
                    f"{config.target_modules[:80]!r} {slow} against the base model's "
                    f"{len(base_info.module_names())} module names; not checked",
                    hint="PEFT matches it against every module name too: a pattern that "
                    "backtracks, like (a+)+, makes loading and training slow; list the "
                    "module names instead",
                    rule="compat.slow-pattern",
                    severity=Severity.WARNING,
                    key=False,
                )
                continue
            if slow := _slow_pattern_keys(config, base_info):
                yield at(
                    deployment,
                    path,
                    f"adapter {adapter.name!r}: {slow}",
                    hint="vLLM matches each key against every module name when it loads the "
                    "adapter, with no deadline: a key that backtracks, like "
                    "([\\w.]|[\\w.])*, stalls the engine; write the module names out",
                    rule="compat.slow-pattern",
                    severity=Severity.WARNING,
                    key=False,
                )
            if unknown:
                leaves = sorted({n.rsplit(".", 1)[-1] for n in base_info.module_names()})
                shown = ", ".join(leaves[:SHOWN_MODULES]) + (
                    f" and {len(leaves) - SHOWN_MODULES} more"
                    if len(leaves) > SHOWN_MODULES
                    else ""
                )
                yield error(
                    "targets modules the base model does not have: "
                    f"{', '.join(unknown[:SHOWN_MODULES])}",
                    f"this architecture's modules: {shown}",
                    "unknown-target",
                )


def _slow_pattern_keys(config: AdapterConfig, info: BaseModelInfo) -> str | None:
    """rank_pattern and alpha_pattern keys are regular expressions vLLM matches against every
    module name, `(.*[.])?(key)$` (vllm/lora/peft_helper.py): what of them cannot be matched in
    bounded time. All keys of one mapping are asked in one question."""
    for field_name in ("rank_pattern", "alpha_pattern"):
        keys = config.raw.get(field_name)
        if not isinstance(keys, dict) or not keys:
            continue
        pattern = "(.*\\.)?(" + "|".join(f"(?:{key})" for key in keys) + ")"
        if compile_error(pattern):
            continue  # (vLLM's own error when it loads the adapter; PEFT refuses it too)
        try:
            any_match(pattern, info.sorted_module_names, full=True)
        except PatternTooSlow as slow:
            return (
                f"{field_name} keys {list(keys)[:3]!r} {slow} against the base model's "
                f"{len(info.module_names())} module names"
            )
    return None


def _base_mismatch(deployment: Deployment, config: AdapterConfig) -> str | None:
    trained_on = config.base_model
    base = deployment.base_model.source
    if not trained_on:
        return None
    if (
        base.repo is not None
        and HUB_ID.match(trained_on)
        and trained_on.lower() != base.repo.lower()
    ):
        return f"was trained on {trained_on}, not on the base model {base.repo}"
    if base.path is not None and not HUB_ID.match(trained_on):
        trained_path = Path(trained_on)
        # Only a path inside the repository is looked at: elsewhere the message would tell whether
        # any path on this machine exists. (os.path.exists: a 300-character name is simply not there.)
        if (
            trained_path.is_absolute()
            and outside_repository(trained_path, base.path) is None
            and os.path.exists(trained_path)
            and real(trained_path) != real(base.path)
        ):
            return f"was trained on {trained_on}, not on the base model at {base.written_path}"
    return None


def _unknown_targets(targets: tuple[str, ...] | str, info: BaseModelInfo) -> list[str]:
    """Targets that name no module of the base model. Raises PatternTooSlow for a pattern that
    cannot be matched against the module names in bounded time."""
    if targets == "all-linear":  # PEFT's shorthand for every linear layer: always matches
        return []
    if isinstance(targets, str):  # PEFT treats a string as a regular expression over full names
        if compile_error(targets):
            return [targets]  # PEFT could not use it either
        return [] if any_match(targets, info.sorted_module_names, full=True) else [targets]
    return [t for t in targets if t not in info.module_suffixes]
