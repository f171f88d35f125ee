"""GPU counts and scaling numbers that Modal or vLLM would refuse, or that contradict each other."""

from __future__ import annotations

from typing import Iterable

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.spec.model import BaseModelInfo, Deployment
from deployer.vllm.fit import gpu_specs


def check_gpu_count(deployment: Deployment) -> Iterable[Diagnostic]:
    gpu = deployment.gpu
    spec = gpu_specs().get(gpu.type)
    if spec is not None and gpu.count > spec.max_count:
        yield at(
            deployment,
            ("gpu",),
            f"Modal attaches at most {spec.max_count} {gpu.type} GPUs to a container, not "
            f"{gpu.count}",
            hint=f"use {gpu.type}:{spec.max_count} or fewer, or a GPU type that allows up to 8",
            rule="gpu.count",
            key=False,
        )
    info = deployment.base_model.info
    if gpu.count > 1 and isinstance(info, BaseModelInfo):
        config = (
            info.config.get("text_config")
            if isinstance(info.config.get("text_config"), dict)
            else info.config
        )
        heads = config.get("num_attention_heads")
        if isinstance(heads, int) and heads > 0 and heads % gpu.count:
            fitting = [
                n for n in (1, 2, 4, 8) if heads % n == 0 and n <= (spec.max_count if spec else 8)
            ]
            yield at(
                deployment,
                ("gpu",),
                f"{gpu.count} GPUs cannot split the model's {heads} attention heads "
                "evenly; vLLM's tensor parallelism refuses to start",
                hint=f"use a GPU count that divides {heads}: {', '.join(map(str, fitting))}",
                rule="gpu.tensor-parallel",
                key=False,
            )


def check_scaling(deployment: Deployment) -> Iterable[Diagnostic]:
    scaling = deployment.scaling
    if scaling.max_containers is not None and scaling.min_containers > scaling.max_containers:
        written = ("scaling", "max_containers") in deployment.document.keys  # in some YAML
        yield at(
            deployment,
            ("scaling", "min_containers"),
            f"min_containers {scaling.min_containers} is above "
            f"{'' if written else 'the default '}max_containers {scaling.max_containers}",
            hint="lower min_containers or raise max_containers (null: no bound)",
            rule="scaling.bounds",
            key=False,
        )
    if (
        scaling.target_concurrent_inputs is not None
        and scaling.max_concurrent_inputs is not None
        and scaling.target_concurrent_inputs > scaling.max_concurrent_inputs
    ):
        yield at(
            deployment,
            ("scaling", "target_concurrent_inputs"),
            f"target_concurrent_inputs {scaling.target_concurrent_inputs} is above "
            f"max_concurrent_inputs {scaling.max_concurrent_inputs}",
            hint="the target is what the autoscaler aims for below the maximum; make it smaller",
            rule="scaling.bounds",
            key=False,
        )


def check_bfloat16_support(deployment: Deployment) -> Iterable[Diagnostic]:
    gpu = deployment.gpu
    spec = gpu_specs().get(gpu.type)
    if spec is None or spec.has_bfloat16:
        return
    with_bf16 = ", ".join(
        name
        for name, s in gpu_specs().items()
        if s.has_bfloat16
        and not s.same_as
        and s.usd_per_second is not None
        and s.memory_bytes <= spec.memory_bytes * 2
    )
    capability = ".".join(map(str, spec.compute_capability or ()))
    requested = dict(deployment.vllm.args).get("dtype", "auto")
    if requested == "bfloat16":
        yield at(
            deployment,
            ("vllm", "args", "dtype"),
            f"{gpu.type} has no bfloat16 (compute capability {capability}; vLLM needs 8.0) "
            "and refuses to start with dtype bfloat16",
            hint=f"use dtype: float16 (or auto), or a GPU with bfloat16 such as {with_bf16}",
            rule="gpu.dtype",
            key=False,
        )
        return
    info = deployment.base_model.info
    checkpoint = (
        str(info.config.get("torch_dtype") or info.config.get("dtype") or "")
        if isinstance(info, BaseModelInfo)
        else ""
    )
    if requested == "auto" and checkpoint == "bfloat16":
        yield at(
            deployment,
            ("gpu",),
            f"{gpu.type} has no bfloat16 (compute capability {capability}): vLLM will "
            "serve this bfloat16 model in float16, which can overflow in some models and "
            "gives outputs that differ from bfloat16",
            hint="set vllm.args.dtype: float16 to say so and silence this, or use a GPU with "
            f"bfloat16 such as {with_bf16}",
            rule="gpu.dtype-fallback",
            severity=Severity.WARNING,
            key=False,
        )
