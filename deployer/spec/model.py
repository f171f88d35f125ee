"""A validated deployment as plain frozen dataclasses: what every later step works from.

`build_deployment` runs only on documents the schema accepted, so it can trust shapes and types;
defaults for omitted fields come from the schema's `default` annotations (one source of truth).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.core.paths import real
from deployer.spec.load import Document
from deployer.spec.locked import Locked
from deployer.spec.schema import schema


@dataclass(frozen=True)
class Source:
    """Where weights come from: a Hub repo (at a revision) or a local folder."""

    repo: str | None = None
    revision: str | None = None
    path: Path | None = None  # absolute; resolved against the YAML file that wrote it
    written_path: str | None = None  # as the user wrote it

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def describe(self) -> str:
        if self.path is not None:
            return self.written_path or str(self.path)
        return f"{self.repo}@{self.revision}" if self.revision else str(self.repo)


@dataclass(frozen=True)
class BaseModelInfo:
    """What the deployer reads of a base model without loading it."""

    config: dict  # config.json
    tensors: (
        dict[str, tuple[str, tuple[int, ...]]] | None
    )  # name → (dtype, shape); None: weights not here
    read_from: str

    def module_names(self) -> frozenset[str]:
        """Full names of the modules that own weights, e.g. model.layers.0.self_attn.q_proj."""
        return self._modules

    @functools.cached_property
    def _modules(self) -> frozenset[str]:  # computed once: a thousand adapters ask
        return frozenset(name.rsplit(".", 1)[0] for name in self.tensors or {})

    @functools.cached_property
    def sorted_module_names(self) -> tuple[str, ...]:
        """module_names() in order: what a pattern is matched against (each adapter asks)."""
        return tuple(sorted(self._modules))

    @functools.cached_property
    def module_suffixes(self) -> frozenset[str]:
        """Every dotted ending of every module name (q_proj, self_attn.q_proj, ... the full name):
        what PEFT matches a listed target against."""
        return frozenset(
            ".".join(parts[i:])
            for parts in (m.split(".") for m in self._modules)
            for i in range(len(parts))
        )


@dataclass(frozen=True)
class BaseModel:
    source: Source
    served_name: str
    info: "BaseModelInfo | UnknownConfig | None" = None  # None: not looked up yet


@dataclass(frozen=True)
class AdapterConfig:
    """What the deployer needs from an adapter's adapter_config.json."""

    rank: int  # the largest rank in the adapter: `r`, or any value of `rank_pattern`
    alpha: float | None
    target_modules: tuple[str, ...] | str  # a list of module names, or PEFT's regular expression
    base_model: str | None
    read_from: str
    raw: dict = field(default_factory=dict, compare=False)  # the whole adapter_config.json
    weights: str | None = None  # the weights file found beside it, if any


@dataclass(frozen=True)
class UnknownConfig:
    """A config that could not be read, and why. `definite`: the source said it is not there (a
    finding), rather than it being out of reach from here."""

    reason: str
    definite: bool = False


@dataclass(frozen=True)
class Adapter:
    name: str
    source: Source
    config: AdapterConfig | UnknownConfig | None = None  # None: not looked up yet


@dataclass(frozen=True)
class Gpu:
    type: str
    count: int = 1

    @property
    def modal_spec(self) -> str:
        """The string Modal's `gpu=` takes."""
        return self.type if self.count == 1 else f"{self.type}:{self.count}"


def modal_gpu_name(written: str) -> str:
    """Modal's spelling of a GPU type the schema accepted in any case (`a10g` is A10G): the app
    and every GPU table use one spelling, so `a10g` and `A10G` render the same app."""
    names = schema()["$defs"]["gpu_type"]["examples"]
    return next((name for name in names if name.upper() == written.upper()), written)


@dataclass(frozen=True)
class VllmSpec:
    version: str
    args: tuple[tuple[str, Any], ...] = ()  # (flag name, value) in the order written
    env_from_secrets: tuple[str, ...] = ()  # credential-like variables vLLM's own process may read


@dataclass(frozen=True)
class Image:
    base: str
    python: str
    pip: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scaling:
    scaledown_window: int
    min_containers: int
    max_containers: int | None
    buffer_containers: int | None
    max_concurrent_inputs: int | None
    target_concurrent_inputs: int | None
    startup_timeout: int
    timeout: int | None


@dataclass(frozen=True)
class ColdStart:
    prefetch: bool = True
    gpu_snapshot: bool = False


@dataclass(frozen=True)
class Auth:
    api_key_secret: str | None = None
    proxy: bool = False

    @property
    def is_public(self) -> bool:
        return self.api_key_secret is None and not self.proxy


@dataclass(frozen=True)
class Smoke:
    prompt: str
    max_tokens: int
    expect: tuple[tuple[str, str], ...] = ()  # (model id, regular expression)


@dataclass(frozen=True)
class DeclaredSource:
    """A model folder or repo a deployment names: what it is for, and where the YAML says so."""

    source: Source
    yaml_path: tuple[str | int, ...]
    adapter: str | None  # the adapter's name; None for the base model


@dataclass(frozen=True)
class Deployment:
    name: str
    file: str  # the deployment's YAML, as displayed in diagnostics
    sources: tuple[str, ...]  # the deployment file, then any defaults merged under it
    base_model: BaseModel
    adapters: tuple[Adapter, ...]
    gpu: Gpu
    vllm: VllmSpec
    image: Image
    scaling: Scaling
    cold_start: ColdStart
    auth: Auth
    secrets: tuple[str, ...]
    smoke: Smoke
    document: Document = field(compare=False, repr=False)  # for positions in later diagnostics
    lock: Locked | None = None  # what the lock pins for it (sources/lock.py); None: not looked up
    accept: tuple[tuple[str, str], ...] = ()  # (rule id, reason): warnings the team accepts
    # "static": adapters only at start; "dynamic": adapters staged later load on first use too.
    adapter_loading: str = "static"

    @property
    def loads_adapters_dynamically(self) -> bool:
        return self.adapter_loading == DYNAMIC

    @property
    def model_ids(self) -> list[str]:
        """What clients may ask for: the base's served name, then each adapter's name."""
        return [self.base_model.served_name, *(a.name for a in self.adapters)]

    @property
    def declared_sources(self) -> list[DeclaredSource]:
        """The base model's source, then each adapter's."""
        base = DeclaredSource(self.base_model.source, ("base_model", "path"), None)
        return [
            base,
            *(
                DeclaredSource(a.source, ("adapters", i, "path"), a.name)
                for i, a in enumerate(self.adapters)
            ),
        ]


DYNAMIC = "dynamic"  # adapter_loading: adapters staged while it runs are served too


def name_from_file(path: str | Path) -> str:
    return Path(path).stem


@functools.cache
def _defaults(section: str) -> dict[str, Any]:
    props = schema()["properties"][section]["properties"]
    return {key: spec["default"] for key, spec in props.items() if "default" in spec}


def _whole(value: Any) -> Any:
    """2.0 → 2: JSON Schema's `integer` admits whole floats, Modal and vLLM want ints."""
    return int(value) if isinstance(value, float) else value


def smoke_defaults() -> dict[str, Any]:
    return _defaults("smoke")


def build_deployment(document: Document, base_dir_of: dict[str, Path]) -> Deployment:
    """The dataclass form of a schema-valid document. `base_dir_of` maps a file to its folder,
    against which that file's relative `path:` values are resolved."""
    data = document.data

    def source(spec: dict, at: tuple) -> Source:
        if "path" in spec:
            origin = document.where(at + ("path",)).file
            written = Path(os.path.abspath(base_dir_of[origin])) / spec["path"]
            # Unresolvable (a link chain too long to follow): kept as written, which the sources
            # check then refuses rather than reading a path the kernel would take elsewhere.
            return Source(path=real(written) or written, written_path=spec["path"])
        return Source(repo=spec["repo"], revision=spec.get("revision"))

    base = data["base_model"]
    base_source = source(base, ("base_model",))
    adapters = tuple(
        Adapter(a["name"], source(a, ("adapters", i)))
        for i, a in enumerate(data.get("adapters", []))
    )

    gpu_spec = data["gpu"]
    if isinstance(gpu_spec, str):
        gpu_type, _, count = gpu_spec.partition(":")
        gpu = Gpu(modal_gpu_name(gpu_type), int(count or 1))
    else:
        gpu = Gpu(
            modal_gpu_name(gpu_spec["type"]), int(gpu_spec.get("count", 1))
        )  # JSON Schema counts 2.0 as an integer

    image = {**_defaults("image"), **data.get("image", {})}
    scaling = {**_defaults("scaling"), **data.get("scaling", {})}
    cold_start = {**_defaults("cold_start"), **data.get("cold_start", {})}
    auth = data["auth"]
    smoke = {**_defaults("smoke"), **data.get("smoke", {})}
    return Deployment(
        name=data.get("name") or name_from_file(document.file),
        file=document.file,
        sources=document.sources,
        base_model=BaseModel(base_source, base.get("served_name") or base.get("repo")),
        adapters=adapters,
        gpu=gpu,
        vllm=VllmSpec(
            data["vllm"]["version"],
            tuple(data["vllm"].get("args", {}).items()),
            tuple(data["vllm"].get("env_from_secrets", [])),
        ),
        image=Image(
            image["base"], image["python"], tuple(image["pip"]), tuple(sorted(image["env"].items()))
        ),
        scaling=Scaling(**{key: _whole(scaling.get(key)) for key in Scaling.__dataclass_fields__}),
        cold_start=ColdStart(bool(cold_start["prefetch"]), bool(cold_start["gpu_snapshot"])),
        auth=Auth()
        if auth == "none"
        else Auth(auth.get("api_key", {}).get("secret"), bool(auth.get("proxy"))),
        secrets=tuple(data.get("secrets", [])),
        smoke=Smoke(
            smoke["prompt"], _whole(smoke["max_tokens"]), tuple(smoke.get("expect", {}).items())
        ),
        document=document,
        accept=tuple(data.get("accept", {}).items()),
        adapter_loading=data.get(
            "adapter_loading", schema()["properties"]["adapter_loading"]["default"]
        ),
    )
