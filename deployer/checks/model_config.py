"""The base model's config.json, which the pull request can commit (or a Hub repo it names can
hold): vLLM acts on some of its keys before it loads anything. With `speculators_config`, vLLM
serves the model that `verifier.name_or_path` names instead, with that model's own tokenizer and
weights, which no check here has read (a nested folder whose tokenizer read a file outside the
repository, given back by /detokenize; or any Hub repo)."""

from __future__ import annotations

from typing import Iterable

from ..diagnostics import Diagnostic
from ..model import BaseModelInfo, Deployment
from ._at import at
from .tokenizer import NOT_READ, system_files

SWAPS_MODEL = "speculators_config"  # vllm/transformers_utils/config.py maybe_override_with_speculators


def check_model_config(deployment: Deployment) -> Iterable[Diagnostic]:
    info, source = deployment.base_model.info, deployment.base_model.source
    if not isinstance(info, BaseModelInfo):
        return
    where = f"{source.written_path if source.path is not None else source.describe()}/config.json"
    if info.config.get(SWAPS_MODEL) is not None:
        verifier = info.config[SWAPS_MODEL].get("verifier") if isinstance(info.config[SWAPS_MODEL], dict) else None
        named = verifier.get("name_or_path") if isinstance(verifier, dict) else None
        serves = f"the model its verifier names ({named!r})" if isinstance(named, str) else "the model its verifier names"
        yield at(
            deployment,
            ("base_model",),
            f"{where} has {SWAPS_MODEL}: vLLM would serve {serves} in place of this one, with that model's own tokenizer and weights, none of which the deployer has checked",
            hint="make the verifier the base_model and name this speculator as the draft in vllm.args.speculative-config ({model: ..., method: eagle3}), or remove speculators_config",
            rule="model.config-swaps-model",
            key=False,
        )
    if system := system_files(info.config, skipped=NOT_READ):
        key, value = system[0]
        yield at(
            deployment,
            ("base_model",),
            f"{where} names {value!r} ({key}), a system file in the container or a path climbing out of the model folder: whatever reads that key would open it, and the container's Secrets are in /proc",
            hint=f"remove {key}; a model's files belong in its folder, found by their standard names",
            rule="model.config-reads-system-file",
            key=False,
        )
