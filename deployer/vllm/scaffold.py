"""What `deployer new` decides for a new deployment, and the commented file it writes.

Every choice is made from what the deployer reads anyway: the base model from the adapters' own
adapter_config.json, the GPU and the context from the fit arithmetic `deployer fit` uses
(fit.py), the LoRA limits from the adapters' ranks (argv.py derives them at each render, so the
file leaves them out). Each choice goes into the file with a comment saying why; a fact that
could not be read is said, with what was assumed in its place.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import Sequence

from deployer.spec.model import AdapterConfig, BaseModelInfo, Deployment, Gpu, UnknownConfig
from deployer.spec.schema import schema
from deployer.vllm.argv import VLLM_DEFAULT_MAX_LORA_RANK, derived_lora_flags, needed_lora_rank
from deployer.vllm.fit import cents_per_hour, cheapest_fitting, compute, gib, model_shape

SCHEMA_LINE = "# yaml-language-server: $schema=../deployer/deployment.schema.json"
# Long enough for most chat, RAG and agent requests; a longer context only takes KV cache that
# requests in flight would otherwise share. The model's own limit wins when it is shorter.
USEFUL_CONTEXT = 32768
# Below this a deployment serves little: a GPU that holds no more is refused, not written.
SMALLEST_USEFUL_CONTEXT = 8192
# Where the base model's config.json cannot be read: a 48 GB GPU holds most models up to 14B
# parameters in 16 bits with that context.
ASSUMED_GPU = "L40S"
ASSUMED_CONTEXT = 8192
COMMENT_WIDTH = 100


@dataclass(frozen=True)
class AdapterSource:
    name: str
    repo: str
    revision: str | None


def adapter_sources(written: Sequence[str]) -> list[AdapterSource]:
    """`REPO[@REV]` arguments as adapters, each named after its repo (its model id for clients);
    two from one repo are told apart by their revision. ValueError for a malformed argument."""
    sources: list[AdapterSource] = []
    taken: set[str] = set()
    for text in written:
        repo, at, revision = text.partition("@")
        if not re.fullmatch(schema()["$defs"]["hub_repo"]["pattern"], repo) or (
            at and not revision
        ):
            raise ValueError(f"--adapter {text}: write a Hugging Face repo id, REPO or REPO@REV")
        name = _model_id(repo.split("/")[1])
        if name in taken and revision:
            name = _model_id(f"{name}-{revision}")
        unique, number = name, 2
        while unique in taken:
            unique, number = _model_id(f"{name}-{number}"), number + 1
        taken.add(unique)
        sources.append(AdapterSource(unique, repo, revision or None))
    return sources


def _model_id(text: str) -> str:
    """`text` as an adapter name the schema accepts: letters, digits, '.', '_', '-', at most 64."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text).lstrip("._-")[:64]
    return cleaned or "adapter"


def choose_base(
    configs: Sequence[tuple[AdapterSource, AdapterConfig | UnknownConfig]], given: str | None
) -> tuple[str, str] | str:
    """(the base model's repo, why it is the one), or why none can be chosen."""
    named = {
        source.name: config.base_model
        for source, config in configs
        if isinstance(config, AdapterConfig) and config.base_model
    }
    if given:
        others = sorted({b for b in named.values() if b != given})
        if others:
            return given, (
                f"Given with --base; the adapters' configs name {', '.join(others)}: check they "
                "were trained on this model."
            )
        return given, "Given with --base."
    bases = sorted(set(named.values()))
    if len(bases) > 1:
        listed = "; ".join(f"{name}: {base}" for name, base in sorted(named.items()))
        return f"the adapters were trained on different base models ({listed}); pass --base REPO"
    if not bases:
        unread = "; ".join(
            f"{source.name}: {config.reason}"
            if isinstance(config, UnknownConfig)
            else f"{source.name}: its adapter_config.json names no base_model_name_or_path"
            for source, config in configs
        )
        return f"cannot tell the base model ({unread}); pass --base REPO"
    if not re.fullmatch(schema()["$defs"]["hub_repo"]["pattern"], bases[0]):
        return (
            f"the adapters were trained on {bases[0]!r}, which is not a Hugging Face repo id "
            "(a local folder?); pass --base REPO"
        )
    return bases[0], (
        "The base the adapters were trained on: base_model_name_or_path in their "
        "adapter_config.json."
    )


def clean_length(tokens: int) -> int:
    """The largest power of two, or one and a half times one, at most `tokens`: 24576, 32768."""
    clean, step = 0, 1024
    while step <= tokens:
        clean = max(clean, step)
        if step * 3 // 2 <= tokens:
            clean = step * 3 // 2
        step *= 2
    return clean


@dataclass(frozen=True)
class Sizing:
    gpu: str  # as written in the file: "L4", "H100:2"
    max_model_len: int
    gpu_why: str
    context_why: str
    assumed: str | None = None  # what could not be read, and what was assumed


def size(deployment: Deployment, gpu_given: bool) -> Sizing | str:
    """The GPU (the cheapest that holds a useful context, unless given: then `deployment.gpu`)
    and the max-model-len that fits it; or why no GPU will do."""
    info = deployment.base_model.info
    shape = (
        model_shape(info, dict(deployment.vllm.args))
        if isinstance(info, BaseModelInfo)
        else getattr(info, "reason", "the base model was not read")
    )
    if isinstance(shape, str):
        gpu = deployment.gpu.modal_spec if gpu_given else ASSUMED_GPU
        return Sizing(
            gpu,
            ASSUMED_CONTEXT,
            "Given with --gpu; not sized: the base model's config.json was not read."
            if gpu_given
            else f"Assumed, not sized: a 48 GB {ASSUMED_GPU} holds most models up to 14B "
            "parameters in 16 bits.",
            f"Assumed: {ASSUMED_CONTEXT:,} tokens, not checked against the model. Run "
            f"`deployer fit {deployment.name}` where the Hub is reachable, and adjust.",
            assumed=f"the base model's config.json ({shape}); assumed GPU {gpu} and "
            f"max-model-len {ASSUMED_CONTEXT}",
        )
    model_max = shape.max_position_embeddings or USEFUL_CONTEXT
    wanted = min(model_max, USEFUL_CONTEXT)
    smallest = min(model_max, SMALLEST_USEFUL_CONTEXT)
    cheapest = cheapest_fitting(deployment, shape, wanted) or cheapest_fitting(
        deployment, shape, smallest
    )
    gpu = deployment.gpu if gpu_given else (cheapest[0][0] if cheapest else None)
    if gpu is None:
        return (
            f"no GPU configuration Modal offers holds {deployment.base_model.served_name} with "
            f"{smallest:,} tokens of context"
        )
    fit = compute(deployment, shape, gpu, wanted)
    if fit is None:
        return f"no memory data for GPU {gpu.type}"
    length = min(wanted, clean_length(fit.max_fitting_len))
    if length < smallest:
        instead = (
            f"; the cheapest that does is {cheapest[0][0].modal_spec} "
            f"({_dollars(cheapest[0][0])}/h)"
            if cheapest
            else ""
        )
        return (
            f"{gpu.modal_spec} holds {deployment.base_model.served_name} with at most "
            f"{max(fit.max_fitting_len, 0):,} tokens of context, less than {smallest:,}{instead}"
        )
    sized = compute(deployment, shape, gpu, length)
    lora = f" and {gib(fit.lora_bytes)} of LoRA buffers" if fit.lora_bytes else ""
    if gpu_given:
        gpu_why = "Given with --gpu."
        if cheapest and cheapest[0][1] < (cents_per_hour(gpu) or 0) / 100:
            gpu_why += (
                f" The cheapest GPU that holds {wanted:,} tokens is {cheapest[0][0].modal_spec} "
                f"({_dollars(cheapest[0][0])}/h against {_dollars(gpu)}/h)."
            )
    else:
        gpu_why = (
            f"The cheapest GPU that holds {length:,} tokens of context beside "
            f"{gib(shape.weight_bytes)} of weights{lora}: {_dollars(gpu)} per warm hour."
        )
    concurrent = sized.kv_budget_bytes // max(sized.kv_bytes_per_token, 1)
    capped = (
        f" of the model's {model_max:,}; a longer context takes KV cache that requests in "
        "flight share"
        if length < model_max
        else ", the model's whole context"
    )
    context_why = (
        f"{length:,} tokens{capped}. The KV cache left on {gpu.modal_spec} holds "
        f"{concurrent:,} tokens, about {concurrent // length} requests of this length at "
        f"once. `deployer fit {deployment.name}` shows the breakdown."
    )
    return Sizing(gpu.modal_spec, length, gpu_why, context_why)


def _dollars(gpu: Gpu) -> str:
    cents = cents_per_hour(gpu)
    return "an unknown price" if cents is None else f"${cents // 100}.{cents % 100:02d}"


def lora_why(deployment: Deployment) -> tuple[str, list[str]]:
    """The comment on the adapters' LoRA limits, and the adapters whose rank could not be read
    (each with the reason)."""
    unread = [
        f"adapter {a.name!r} ({a.config.reason})"
        for a in deployment.adapters
        if isinstance(a.config, UnknownConfig)
    ]
    derived = derived_lora_flags(deployment)
    needed = needed_lora_rank(deployment)
    slots = (
        f" and --max-loras {derived['max-loras']} (all of them on the GPU at once)"
        if "max-loras" in derived
        else ""
    )
    if needed and "max-lora-rank" in derived:
        why = (
            f"LoRA limits are derived from these adapters at each render: --max-lora-rank "
            f"{derived['max-lora-rank']} (the largest rank, {needed[1]}'s r={needed[0]}){slots}. "
            "Set them under vllm.args only to pin them."
        )
    else:
        why = (
            "The adapters' ranks could not all be read here: vLLM's default --max-lora-rank "
            f"{VLLM_DEFAULT_MAX_LORA_RANK} applies until the deployer can read them{slots}. "
            "Check with `deployer validate` where the Hub is reachable."
        )
    return why, unread


@dataclass(frozen=True)
class NewDeployment:
    name: str
    base: str
    base_why: str
    adapters: tuple[AdapterSource, ...]
    gpu: str  # as written: the sizing's, or for a draft the one given (else ASSUMED_GPU)
    vllm_version: str | None  # None: deployments/_defaults.yaml sets it
    sizing: Sizing | None  # None: a draft, read only to size the deployment
    lora_why: str = ""


def compose(new: NewDeployment) -> str:
    """The deployment file: the schema line, then each setting under a comment saying why."""
    lines = [
        SCHEMA_LINE,
        "#",
        f"# Written by `deployer new {new.name}`. Check it with `deployer validate`, size it with",
        f"# `deployer fit {new.name}`.",
        "",
        *_comment(new.base_why),
        "base_model:",
        f"  repo: {new.base}",
        "",
        *_comment(
            "Each adapter is served under its name as a model id; vLLM batches requests for "
            "different adapters together. " + new.lora_why
        ),
        "adapters:",
    ]
    for adapter in new.adapters:
        lines += [f"  - name: {adapter.name}", f"    repo: {adapter.repo}"]
        if adapter.revision:
            lines.append(f'    revision: "{adapter.revision}"')
    sizing = new.sizing
    lines += ["", *_comment(sizing.gpu_why if sizing else ""), f"gpu: {new.gpu}", ""]
    if new.vllm_version or sizing:
        lines.append("vllm:")
    if new.vllm_version:
        lines.append(f'  version: "{new.vllm_version}"')
    if sizing:
        lines += ["  args:", *_comment(sizing.context_why, "    ")]
        lines.append(f"    max-model-len: {sizing.max_model_len}")
    if new.vllm_version or sizing:
        lines.append("")
    lines += [
        *_comment(
            "A protected endpoint: clients send the key as their OpenAI api_key. Create the "
            "Modal Secret holding it once:"
        ),
        f"#   modal secret create {new.name}-api-key VLLM_API_KEY=$(openssl rand -hex 32)",
        "auth:",
        f"  api_key: {{secret: {new.name}-api-key}}",
    ]
    return "\n".join(lines) + "\n"


def _comment(text: str, indent: str = "") -> list[str]:
    if not text:
        return []
    return textwrap.wrap(
        text,
        COMMENT_WIDTH,
        initial_indent=f"{indent}# ",
        subsequent_indent=f"{indent}# ",
        break_on_hyphens=False,
        break_long_words=False,
    )
