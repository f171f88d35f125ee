"""GPU counts and scaling numbers that Modal or vLLM would refuse, or that contradict each other."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import Diagnostic
from ..fit import gpu_specs
from ..model import BaseModelInfo, Deployment
from ._at import at


def check_gpu_count(deployment: Deployment) -> Iterable[Diagnostic]:
    gpu = deployment.gpu
    spec = gpu_specs().get(gpu.type)
    if spec is not None and gpu.count > spec.max_count:
        yield at(deployment, ("gpu",), f"Modal attaches at most {spec.max_count} {gpu.type} GPUs to a container, not {gpu.count}", hint=f"use {gpu.type}:{spec.max_count} or fewer, or a GPU type that allows up to 8", rule="gpu.count", key=False)
    info = deployment.base_model.info
    if gpu.count > 1 and isinstance(info, BaseModelInfo):
        config = info.config.get("text_config") if isinstance(info.config.get("text_config"), dict) else info.config
        heads = config.get("num_attention_heads")
        if isinstance(heads, int) and heads > 0 and heads % gpu.count:
            fitting = [n for n in (1, 2, 4, 8) if heads % n == 0 and n <= (spec.max_count if spec else 8)]
            yield at(deployment, ("gpu",), f"{gpu.count} GPUs cannot split the model's {heads} attention heads evenly; vLLM's tensor parallelism refuses to start", hint=f"use a GPU count that divides {heads}: {', '.join(map(str, fitting))}", rule="gpu.tensor-parallel", key=False)


def check_scaling(deployment: Deployment) -> Iterable[Diagnostic]:
    scaling = deployment.scaling
    if scaling.max_containers is not None and scaling.min_containers > scaling.max_containers:
        yield at(deployment, ("scaling", "min_containers"), f"min_containers {scaling.min_containers} is above max_containers {scaling.max_containers}", hint="lower min_containers or raise max_containers", rule="scaling.bounds", key=False)
    if scaling.target_concurrent_inputs is not None and scaling.max_concurrent_inputs is not None and scaling.target_concurrent_inputs > scaling.max_concurrent_inputs:
        yield at(deployment, ("scaling", "target_concurrent_inputs"), f"target_concurrent_inputs {scaling.target_concurrent_inputs} is above max_concurrent_inputs {scaling.max_concurrent_inputs}", hint="the target is what the autoscaler aims for below the maximum; make it smaller", rule="scaling.bounds", key=False)
