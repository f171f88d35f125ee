"""Will vLLM fit this model, its LoRA slots and its context on this GPU? vLLM answers only after a
cold start, by refusing to start; we answer at validate time, with what would fit instead."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import BaseModelInfo, Deployment, UnknownConfig
from deployer.vllm.fit import cheapest_fitting, compute, gib, model_shape


def check_gpu_fit(deployment: Deployment) -> Iterable[Diagnostic]:
    info = deployment.base_model.info
    source = deployment.base_model.source
    if source.is_local and not source.path.is_dir():
        return  # reported by the sources check
    if isinstance(info, UnknownConfig):
        if info.definite:
            yield at(
                deployment,
                ("base_model",),
                f"base model: {info.reason}",
                hint="check the repo id, revision or path; vLLM could not load it either",
                rule="sources.unreadable",
            )
        else:
            yield _skipped(deployment, info.reason)
        return
    if not isinstance(info, BaseModelInfo):
        return
    args = dict(deployment.vllm.args)
    shape = model_shape(info, args)
    if isinstance(shape, str):
        yield _skipped(deployment, shape)
        return
    fit = compute(deployment, shape)
    if fit is None:
        return
    explicit = "max-model-len" in args
    if (
        explicit
        and shape.max_position_embeddings
        and fit.max_model_len > shape.max_position_embeddings
    ):
        yield at(
            deployment,
            ("vllm", "args", "max-model-len"),
            f"max-model-len {fit.max_model_len:,} exceeds the model's "
            f"max_position_embeddings ({shape.max_position_embeddings:,}); vLLM refuses it",
            hint=f"use at most {shape.max_position_embeddings:,}",
            rule="fit.beyond-model",
            key=False,
        )
        return
    if fit.fits:
        return
    lora = f", {gib(fit.lora_bytes)} of LoRA buffers" if fit.lora_bytes else ""
    where = f"{deployment.gpu.modal_spec} ({gib(fit.total_bytes)})"
    message = (
        f"{deployment.base_model.served_name} with {fit.max_model_len:,} tokens of "
        f"context does not fit on {where}: "
        f"its KV cache needs {gib(fit.needed_kv_bytes)}, but only "
        f"{gib(max(fit.kv_budget_bytes, 0))} remain of {gib(fit.budget_bytes)} "
        f"(gpu-memory-utilization {fit.utilization}) after {gib(fit.weight_bytes)} of "
        f"weights{lora} and about {gib(fit.overhead_bytes)} of overhead"
    )
    hints = []
    if fit.max_fitting_len > 0:
        hints.append(f"set vllm.args.max-model-len to at most {fit.max_fitting_len:,}")
    alternatives = cheapest_fitting(deployment, shape, fit.max_model_len)
    if alternatives:
        listed = ", ".join(f"{g.modal_spec} (${price:.2f}/h)" for g, price in alternatives)
        hints.append(f"or use a GPU that holds {fit.max_model_len:,} tokens: {listed}")
    path = ("vllm", "args", "max-model-len") if explicit else ("gpu",)
    yield at(
        deployment,
        path,
        message,
        hint="; ".join(hints) + "  (details: deployer fit " + deployment.name + ")",
        rule="fit.kv-cache",
        key=not explicit,
    )


def _skipped(deployment: Deployment, reason: str) -> Diagnostic:
    if deployment.base_model.source.is_local:
        hint = (
            "the model folder's config.json needs the usual transformer fields for the fit "
            "to be computed"
        )
    else:
        hint = (
            "download its config once (`hf download REPO config.json`) so it is in the "
            "local cache, or run where the Hub is reachable"
        )
    return at(
        deployment,
        ("base_model",),
        f"GPU fit not checked: {reason}",
        hint=hint,
        rule="fit.skipped",
        severity=Severity.NOTE,
    )
