"""Does the model, its LoRA slots and its context fit the GPU? And what does a warm hour cost?

The arithmetic follows vLLM's own start-up check: vLLM may use `gpu-memory-utilization` of the
GPU's memory; weights, LoRA buffers and activations come first, and what remains must hold the KV
cache of at least one sequence of `max-model-len` tokens, or vLLM refuses to start.

    KV bytes per token = layers × KV heads × head dim × 2 (K and V) × KV dtype bytes

Weights are counted exactly from safetensors headers when the weights are at hand, otherwise
from config.json for a standard decoder. Activations and the CUDA context are an estimate.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from deployer.core.limits import INT_MAX_STR_DIGITS, MAX_COUNT
from deployer.spec.model import BaseModelInfo, Deployment, Gpu
from deployer.vllm import catalog
from deployer.vllm.argv import VLLM_DEFAULT_MAX_LORA_RANK, derived_lora_flags

GPUS_FILE = Path(__file__).parents[1] / "data" / "gpus.json"
GIB = 1024**3
TOKEN_COUNT = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT]?)")  # vLLM's human-readable integers
# CUDA context, activations at the default batch size and allocator slack, per GPU. vLLM measures
# this while profiling at start-up; 1.5 GiB is typical for small and mid-size dense models.
OVERHEAD_BYTES_PER_GPU = int(1.5 * GIB)
VLLM_DEFAULT_UTILIZATION = 0.9  # when the pinned version has no catalog to read it from
CONTEXT_STEP = 1024  # suggested context lengths are rounded down to a multiple of this
DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "bfloat16": 2,
    "float16": 2,
    "half": 2,
    "fp8": 1,
    "F32": 4,
    "BF16": 2,
    "F16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
    "I32": 4,
    "I64": 8,
}


@dataclass(frozen=True)
class GpuSpec:
    type: str
    memory_bytes: int
    usd_per_second: float | None
    max_count: int
    same_as: str | None
    compute_capability: tuple[int, int] | None = None

    @property
    def has_bfloat16(self) -> bool:
        """vLLM serves bfloat16 from compute capability 8.0 (Ampere) on; a T4 (7.5) does not."""
        return self.compute_capability is None or self.compute_capability >= (8, 0)


@functools.cache
def gpu_specs() -> dict[str, GpuSpec]:
    data = json.loads(GPUS_FILE.read_text(encoding="utf-8"))
    return {
        name: GpuSpec(
            name,
            g["memory_mib"] * 1024**2,
            g["usd_per_second"],
            g["max_count"],
            g.get("same_as"),
            _capability(g.get("compute_capability")),
        )
        for name, g in data["gpus"].items()
    }


def _capability(text: str | None) -> tuple[int, int] | None:
    return tuple(int(part) for part in text.split(".")) if text else None  # type: ignore[return-value]


def cents_per_hour(gpu: Gpu) -> int | None:
    """What an hour of `gpu` costs, in whole cents (half a cent rounds up); None when unpriced.
    Every format prints money from this, so text, tables and JSON agree to the cent."""
    spec = gpu_specs().get(gpu.type)
    if spec is None or spec.usd_per_second is None:
        return None
    # The per-second price as written in gpus.json, not its nearest binary float.
    cents = Decimal(str(spec.usd_per_second)) * 3600 * gpu.count * 100
    return int(cents.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def usd_per_hour(gpu: Gpu) -> float | None:
    """cents_per_hour in dollars: 1.1, never 1.1016000000000001."""
    cents = cents_per_hour(gpu)
    return None if cents is None else cents / 100


@dataclass(frozen=True)
class ModelShape:
    params: int
    weight_bytes: int
    weights_counted: str  # "safetensors headers" or "config.json estimate"
    dtype: str
    layers: int
    kv_heads: int
    head_dim: int
    kv_dtype_bytes: int
    attention_heads: int
    max_position_embeddings: int
    lora_bytes_per_rank_slot: int  # LoRA A+B buffers for one adapter slot at rank 1

    @property
    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * self.kv_dtype_bytes


def _text_config(config: dict) -> dict:
    inner = config.get("text_config")
    return inner if isinstance(inner, dict) else config


def _positive_int(config: dict, key: str, default: int | None = None) -> int | None:
    """A config value that must be a positive whole number; None when absent or not one."""
    value = config.get(key, default)
    # Above 2**53 no real model size lies, and float arithmetic on it would overflow.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= MAX_COUNT
        or value != int(value)
    ):
        return None
    return int(value)


def _model_max_len(config: dict) -> int | None:
    """The longest context vLLM derives from config.json: max_position_embeddings, scaled by a
    rope_scaling factor (from the original length, for YaRN), as vLLM's _get_and_verify_max_len."""
    length = _positive_int(config, "max_position_embeddings")
    scaling = config.get("rope_scaling")
    if not isinstance(scaling, dict):
        return length
    kind = scaling.get("rope_type") or scaling.get("type")
    factor = scaling.get("factor")
    if (
        kind in ("su", "longrope", "llama3")
        or isinstance(factor, bool)
        or not isinstance(factor, (int, float))
        or not math.isfinite(factor)
        or factor <= 0
    ):
        return length
    if kind == "yarn":
        length = _positive_int(scaling, "original_max_position_embeddings", length)
    scaled = length * factor if length else None
    return int(scaled) if scaled is not None and scaled <= MAX_COUNT else None


def model_shape(info: BaseModelInfo, args: dict[str, Any]) -> ModelShape | str:
    """The model's memory shape, or why it cannot be known."""
    config = _text_config(info.config)
    hidden, layers, heads = (
        _positive_int(config, k)
        for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")
    )
    if not (hidden and layers and heads):
        return "config.json lacks a positive hidden_size, num_hidden_layers or num_attention_heads"
    kv_heads = _positive_int(config, "num_key_value_heads", heads)
    head_dim = _positive_int(config, "head_dim", hidden // heads)
    intermediate = _positive_int(config, "intermediate_size", 4 * hidden)
    vocab = _positive_int(config, "vocab_size", 1)
    max_positions = _model_max_len(config)
    if not (kv_heads and head_dim and intermediate and vocab):
        return (
            "config.json has a num_key_value_heads, head_dim, intermediate_size or "
            "vocab_size that is not a positive whole number"
        )
    if max_positions is None and "max-model-len" not in args:
        return "config.json has no max_position_embeddings, and vllm.args sets no max-model-len"
    dtype = _serving_dtype(
        str(args.get("dtype", "auto")),
        str(info.config.get("torch_dtype") or config.get("torch_dtype") or "bfloat16"),
    )
    if dtype not in DTYPE_BYTES:
        return f"dtype {dtype!r} is not one vLLM serves"
    kv_dtype = str(args.get("kv-cache-dtype", "auto"))
    kv_bytes = 1 if kv_dtype.startswith("fp8") else DTYPE_BYTES.get(kv_dtype, DTYPE_BYTES[dtype])
    quantized = "quantization_config" in info.config

    if info.tensors:
        params = sum(math.prod(shape) for _, shape in info.tensors.values())
        if quantized:
            weight_bytes = sum(
                math.prod(shape) * DTYPE_BYTES.get(d, 2) for d, shape in info.tensors.values()
            )
        else:
            weight_bytes = params * DTYPE_BYTES[dtype]
        counted = "safetensors headers"
    else:
        if quantized or any(
            k in config for k in ("num_experts", "num_local_experts", "n_routed_experts")
        ):
            return (
                "the weights are not at hand and this model (quantized or mixture-of-experts) "
                "cannot be sized from config.json alone"
            )
        attention = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden
        mlp = 3 * hidden * intermediate
        tied = config.get(
            "tie_word_embeddings", info.config.get("tie_word_embeddings", True)
        )  # transformers' default
        embeddings = vocab * hidden * (1 if tied else 2)
        params = layers * (attention + mlp + 2 * hidden) + embeddings + hidden
        weight_bytes = params * DTYPE_BYTES[dtype]
        counted = "config.json estimate"

    # vLLM keeps LoRA buffers for every linear layer it can adapt: packed qkv (an A matrix for each
    # of q, k and v), o, packed gate_up (A for each of gate and up), down.
    per_layer = (
        (3 * hidden + (heads + 2 * kv_heads) * head_dim)
        + (heads * head_dim + hidden)
        + (2 * hidden + 2 * intermediate)
        + (intermediate + hidden)
    )
    return ModelShape(
        params=params,
        weight_bytes=weight_bytes,
        weights_counted=counted,
        dtype=dtype,
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        kv_dtype_bytes=kv_bytes,
        attention_heads=heads,
        max_position_embeddings=max_positions or 0,
        lora_bytes_per_rank_slot=layers * per_layer * DTYPE_BYTES[dtype],
    )


def _serving_dtype(requested: str, checkpoint: str) -> str:
    if requested != "auto":
        return requested
    # vLLM's "auto" serves float32 checkpoints in 16 bits.
    return (
        "bfloat16"
        if checkpoint in ("float32", "float")
        else checkpoint
        if checkpoint in DTYPE_BYTES
        else "bfloat16"
    )


def parse_tokens(value: Any) -> int | None:
    """`max-model-len` as vLLM reads it: 4096, "4k" (×1000) or "4K" (×1024); None for "auto" or -1
    (vLLM then picks the largest that fits) and for anything it would reject."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None  # an int: exact (the loader refuses 2**63 and up)
    if token_text_problem(str(value)):
        return None
    return _token_value(str(value)) or None


DECIMAL_UNITS = ("k", "m", "g", "t")


def token_text_problem(text: str) -> str | None:
    """Why vLLM's `human_readable_int` would refuse `text`, or None if it reads it."""
    match = TOKEN_COUNT.fullmatch(text)
    if not match:
        return "not a whole number, nor one with a unit such as 4k or 4K"
    number, unit = match.groups()
    if "." in number and unit not in DECIMAL_UNITS:
        # vLLM: int("4096.5") fails, and "Decimals are not allowed with binary suffixes".
        return (
            "vLLM takes a decimal point only before k, m, g or t (25.6k), not "
            f"{'before ' + unit if unit else 'without a unit'}"
        )
    if unit not in DECIMAL_UNITS and len(number) > INT_MAX_STR_DIGITS:
        return (
            f"Python's int(), which vLLM reads it with, takes at most {INT_MAX_STR_DIGITS:,} "
            "digits (leading zeros included)"
        )
    if _token_value(text) > MAX_COUNT:
        return f"more than {MAX_COUNT:,} tokens"
    return None


def _token_value(text: str) -> int:
    """The value of a TOKEN_COUNT match without a misplaced decimal point, as vLLM computes it
    (MAX_COUNT + 1 for anything larger than MAX_COUNT)."""
    number, unit = TOKEN_COUNT.fullmatch(text).groups()
    whole, _, fraction = number.partition(".")
    whole = whole.lstrip("0") or "0"  # int() refuses more than 4,300 digits, leading zeros too
    if len(whole) > len(str(MAX_COUNT)):
        return MAX_COUNT + 1
    number = f"{whole}.{fraction[:30]}" if fraction else whole
    scale = {
        "": 1,
        "k": 1000,
        "K": 1024,
        "m": 1000**2,
        "M": 1024**2,
        "g": 1000**3,
        "G": 1024**3,
        "t": 1000**4,
        "T": 1024**4,
    }[unit]
    value = int(float(number) * scale) if unit in DECIMAL_UNITS else int(number) * scale
    return min(value, MAX_COUNT + 1)


@dataclass(frozen=True)
class Fit:
    gpu: Gpu
    total_bytes: int
    utilization: float
    weight_bytes: int
    lora_bytes: int
    lora_slots: int
    lora_rank: int
    overhead_bytes: int
    kv_bytes_per_token: int
    max_model_len: int
    max_model_len_source: str  # "vllm.args.max-model-len" or "the model's max_position_embeddings"

    @property
    def budget_bytes(self) -> int:
        return int(self.total_bytes * self.utilization)

    @property
    def kv_budget_bytes(self) -> int:
        return self.budget_bytes - self.weight_bytes - self.lora_bytes - self.overhead_bytes

    @property
    def needed_kv_bytes(self) -> int:
        return self.max_model_len * self.kv_bytes_per_token

    @property
    def fits(self) -> bool:
        return self.kv_budget_bytes > 0 and self.needed_kv_bytes <= self.kv_budget_bytes

    @property
    def max_fitting_len(self) -> int:
        if self.kv_budget_bytes <= 0 or self.kv_bytes_per_token <= 0:
            return 0
        return (self.kv_budget_bytes // self.kv_bytes_per_token) // CONTEXT_STEP * CONTEXT_STEP


def compute(
    deployment: Deployment,
    shape: ModelShape,
    gpu: Gpu | None = None,
    max_model_len: int | None = None,
) -> Fit | None:
    gpu = gpu or deployment.gpu
    spec = gpu_specs().get(gpu.type)
    if spec is None:
        return None
    args = dict(deployment.vllm.args)
    flags = catalog.load(deployment.vllm.version)

    def flag(name: str) -> catalog.Flag | None:
        return flags.lookup(name) if flags else None

    utilization = _number(
        args.get("gpu-memory-utilization", args.get("device-memory-utilization")),
        _default_utilization(deployment.vllm.version),
        flag("gpu-memory-utilization"),
    )
    lora_slots = lora_rank = 0
    if deployment.adapters:
        derived = derived_lora_flags(deployment)
        lora_slots = int(
            _number(args.get("max-loras"), derived.get("max-loras", 1), flag("max-loras"))
        )
        lora_rank = int(
            _number(
                args.get("max-lora-rank"), derived.get("max-lora-rank", VLLM_DEFAULT_MAX_LORA_RANK)
            )
        )
    requested = parse_tokens(args["max-model-len"]) if "max-model-len" in args else None
    length = max_model_len or requested or shape.max_position_embeddings
    return Fit(
        gpu=gpu,
        total_bytes=spec.memory_bytes * gpu.count,
        utilization=utilization,
        weight_bytes=shape.weight_bytes,
        lora_bytes=lora_slots * lora_rank * shape.lora_bytes_per_rank_slot,
        lora_slots=lora_slots,
        lora_rank=lora_rank,
        overhead_bytes=OVERHEAD_BYTES_PER_GPU * gpu.count,
        kv_bytes_per_token=shape.kv_bytes_per_token,
        max_model_len=length,
        max_model_len_source="vllm.args.max-model-len"
        if (requested and not max_model_len)
        else "the model's max_position_embeddings",
    )


def _number(value: Any, default: float, flag: catalog.Flag | None = None) -> float:
    """A numeric vLLM argument; anything else, or a value outside the flag's bounds (reported by the
    flag check), counts as the default."""
    # Above MAX_COUNT (1e300 max-loras) products of such values overflow float arithmetic.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= MAX_COUNT
    ):
        return default
    if flag is not None and flag.out_of_bounds(value):
        return default
    return value


def _default_utilization(version: str) -> float:
    flags = catalog.load(version)
    flag = flags.lookup("gpu-memory-utilization") if flags else None
    return (
        float(flag.default)
        if flag and isinstance(flag.default, (int, float))
        else VLLM_DEFAULT_UTILIZATION
    )


# A first start on a fresh cache volume, which `startup_timeout` must allow (a deploy without
# `apply`'s prefetch, or with cold_start.prefetch off, downloads in the start). The rates are
# conservative: hf_xet from the Hub to a Modal container and reads from a Modal volume are
# usually several times faster, and a start that runs out of budget is a failed deploy.
HUB_DOWNLOAD_BYTES_PER_SECOND = 50 * 10**6
VOLUME_LOAD_BYTES_PER_SECOND = 200 * 10**6
ENGINE_START_SECONDS = 90  # importing vLLM, CUDA init, memory profiling, KV cache, LoRA slots
COMPILE_SECONDS = 180  # torch.compile and CUDA graph capture (not with enforce-eager); cached


@dataclass(frozen=True)
class StartBudget:
    """Seconds, step by step, that a first start on a fresh volume may take."""

    download: int
    load: int
    engine: int
    compile: int

    @property
    def total(self) -> int:
        return self.download + self.load + self.engine + self.compile


def first_start(deployment: Deployment, weight_bytes: int) -> StartBudget:
    """A conservative estimate of a first start of `deployment` on a fresh cache volume."""
    eager = dict(deployment.vllm.args).get("enforce-eager") is True
    return StartBudget(
        download=math.ceil(weight_bytes / HUB_DOWNLOAD_BYTES_PER_SECOND),
        load=math.ceil(weight_bytes / VOLUME_LOAD_BYTES_PER_SECOND),
        engine=ENGINE_START_SECONDS,
        compile=0 if eager else COMPILE_SECONDS,
    )


def cheapest_fitting(
    deployment: Deployment, shape: ModelShape, max_model_len: int, limit: int = 3
) -> list[tuple[Gpu, float]]:
    """The cheapest GPU configurations (type and count) that hold `max_model_len` tokens. A model
    served in bfloat16 (asked for, or its checkpoint's dtype under `dtype: auto`) is not offered a
    GPU without bfloat16: vLLM would refuse it, or serve it in float16 with different outputs."""
    options = []
    for name, spec in gpu_specs().items():
        if (
            spec.same_as
            or spec.usd_per_second is None
            or (shape.dtype == "bfloat16" and not spec.has_bfloat16)
        ):
            continue
        for count in (1, 2, 4, 8):
            # Tensor parallelism splits attention heads evenly across GPUs.
            if (
                count > spec.max_count
                or shape.attention_heads % count
                or (shape.kv_heads % count and count % shape.kv_heads)
            ):
                continue
            gpu = Gpu(name, count)
            fit = compute(deployment, shape, gpu, max_model_len)
            if fit and fit.fits:
                options.append((gpu, usd_per_hour(gpu)))
                break  # more of the same GPU only costs more
    return sorted(options, key=lambda pair: pair[1])[:limit]


def gib(n: int) -> str:
    try:
        return f"{n / GIB:.2f} GiB"
    except OverflowError:  # no memory is that large; say so rather than fail
        return "more than any GPU holds"


@dataclass(frozen=True)
class Assessment:
    """Everything `deployer fit` reports about one deployment."""

    shape: ModelShape
    fit: Fit
    usd_per_hour: float | None
    # The cheapest GPUs holding max-model-len: the context the deployment asks for, or the
    # model's full context when it asks for none (fit.max_model_len, as the breakdown shows).
    gpus_for_full_context: list[tuple[Gpu, float]]
    start: StartBudget  # a first start on a fresh volume, against scaling.startup_timeout

    @property
    def cheapest(self) -> tuple[Gpu, float] | None:
        """The cheapest GPU that holds the context the deployment asks for."""
        return self.gpus_for_full_context[0] if self.gpus_for_full_context else None


def assess(deployment: Deployment) -> Assessment | str:
    """The fit of `deployment` on its GPU and the alternatives, or why it cannot be sized."""
    info = deployment.base_model.info
    if not isinstance(info, BaseModelInfo):
        return getattr(info, "reason", "the base model was not read")
    shape = model_shape(info, dict(deployment.vllm.args))
    if isinstance(shape, str):
        return shape
    fit = compute(deployment, shape)
    if fit is None:
        return f"no memory data for GPU {deployment.gpu.type}"
    return Assessment(
        shape,
        fit,
        usd_per_hour(deployment.gpu),
        cheapest_fitting(deployment, shape, fit.max_model_len),
        first_start(deployment, shape.weight_bytes),
    )
