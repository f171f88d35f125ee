"""What makes vLLM serve a model other than the one the deployer read, from the base model's own
files, which the pull request can commit (or a Hub repo it names can hold):

- `speculators_config` in config.json: vLLM serves the model that `verifier.name_or_path` names
  instead, with that model's own tokenizer and weights (a nested folder whose tokenizer reads a
  file outside the repository, given back by /detokenize; or any Hub repo);
- `configuration_files` in config.json: transformers reads another config.X.json in its place
  (where speculators_config can hide);
- a `*_model_id` key (Ultravox's text_model_id, audio_model_id), in config.json or in
  `hf-overrides`: vLLM loads that model's config and weights too, from the Hub at its newest
  revision or from a folder; so does a Hub draft model in `speculative-config`;
- `tokenizer-mode` or `config-format` other than Hugging Face's: vLLM reads the tokenizer
  (tiktoken.model, tekken.json) or config (params.json) from files the checks do not read;
- a consolidated*.safetensors file anywhere in the folder: vLLM's auto formats switch to
  Mistral's weights, params.json and tekken.json (other weights served, with nothing in
  config.json to show it).
  Hub models: the app does not download those files (argv.unfetched_files)."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Iterable

from deployer.checks._at import at
from deployer.checks.flags import IMPORT_PATH, PATH_VALUE, json_items, walk_json
from deployer.checks.tokenizer import NOT_READ, system_files
from deployer.core.budget import once
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.core.paths import TooDeep, walk
from deployer.spec.model import BaseModelInfo, Deployment
from deployer.vllm.argv import MISTRAL_WEIGHTS, mistral_asked

SWAPS_MODEL = (
    "speculators_config"  # vllm/transformers_utils/config.py maybe_override_with_speculators
)
SWAPS_CONFIG = "configuration_files"  # transformers/configuration_utils.py get_configuration_file
# Formats whose files the deployer reads: Hugging Face's config.json and tokenizer files.
CHECKED_FORMATS = {"tokenizer-mode": ("auto", "hf", "slow"), "config-format": ("auto", "hf")}
LOADS_MODEL = re.compile(
    r"(^|_)model_id$"
)  # vllm/transformers_utils/configs/ultravox.py, models/ultravox.py
NOT_MODELS = ("ngram", "[ngram]", "auto")  # speculative-config `model` values that name no model


def check_model_config(deployment: Deployment) -> Iterable[Diagnostic]:
    info, source = deployment.base_model.info, deployment.base_model.source
    if not isinstance(info, BaseModelInfo):
        return
    where = f"{source.describe()}/config.json"
    if info.config.get(SWAPS_MODEL) is not None:
        verifier = (
            info.config[SWAPS_MODEL].get("verifier")
            if isinstance(info.config[SWAPS_MODEL], dict)
            else None
        )
        named = verifier.get("name_or_path") if isinstance(verifier, dict) else None
        serves = (
            f"the model its verifier names ({named!r})"
            if isinstance(named, str)
            else "the model its verifier names"
        )
        yield at(
            deployment,
            ("base_model",),
            f"{where} has {SWAPS_MODEL}: vLLM would serve {serves} in place of this one, "
            "with that model's own tokenizer and weights, none of which the deployer has "
            "checked",
            hint="make the verifier the base_model and name this speculator as the draft in "
            "vllm.args.speculative-config ({model: ..., method: eagle3}), or remove "
            "speculators_config",
            rule="model.config-swaps-model",
            key=False,
        )
    if info.config.get(SWAPS_CONFIG) is not None:
        yield at(
            deployment,
            ("base_model",),
            f"{where} has {SWAPS_CONFIG}: transformers reads the config.X.json it names in "
            "place of config.json, and that file is not checked",
            hint=f"remove {SWAPS_CONFIG} and keep the model's configuration in config.json",
            rule="model.config-swaps-model",
            key=False,
        )
    if system := system_files(info.config, skipped=NOT_READ):
        key, value = system[0]
        yield at(
            deployment,
            ("base_model",),
            f"{where} names {value!r} ({key}), a system file in the container or a path "
            "climbing out of the model folder: whatever reads that key would open it, and "
            "the container's Secrets are in /proc",
            hint=f"remove {key}; a model's files belong in its folder, found by their standard "
            "names",
            rule="model.config-reads-system-file",
            key=False,
        )
    yield from _other_models(deployment, walk_json(info.config), ("base_model",), where)
    yield from _mistral_format(deployment, where.rsplit("/", 1)[0])


def check_other_models_in_flags(deployment: Deployment) -> Iterable[Diagnostic]:
    """The same model-loading keys set through `hf-overrides`, a Hub draft model, and formats
    whose files go unchecked, whatever the base model (its config may be out of reach here)."""
    args = dict(deployment.vllm.args)
    if "hf-overrides" in args:
        yield from _other_models(
            deployment,
            json_items(args["hf-overrides"]),
            ("vllm", "args", "hf-overrides"),
            "hf-overrides",
        )
    draft = _mapping(args.get("speculative-config"))
    named = draft.get("model")
    # (a folder is the flags check's file warning, an import path its code warning)
    if (
        isinstance(named, str)
        and named
        and not PATH_VALUE.match(named)
        and named not in NOT_MODELS
        and not ("/" not in named and IMPORT_PATH.match(named))
    ):
        revision = draft.get("revision") if isinstance(draft.get("revision"), str) else None
        yield at(
            deployment,
            ("vllm", "args", "speculative-config"),
            f"speculative-config names a Hub draft model ({named!r}): vLLM downloads it "
            "itself, at "
            f"{'revision ' + repr(revision) if revision else 'its newest revision'}, and "
            "loads its config (and, with use_heterogeneous_vocab, its tokenizer), which "
            "the deployer does not check",
            hint="review the draft model as part of the deployment, and pin it with "
            '"revision": a commit id',
            rule="model.config-loads-model",
            severity=Severity.WARNING,
            key=False,
        )
    if mistral_asked(deployment):
        yield at(
            deployment,
            ("vllm", "args", "load-format"),
            f"load-format mistral loads {MISTRAL_WEIGHTS}, and with it vLLM takes "
            "params.json as the config and tekken.json as the tokenizer: the deployer "
            "checks config.json, model.safetensors and the Hugging Face tokenizer files, "
            "not those",
            hint="review the Mistral-format files as unchecked, or leave load-format out to "
            "serve the checked ones",
            rule="model.mistral-format",
            severity=Severity.WARNING,
            key=False,
        )
    for flag, checked in CHECKED_FORMATS.items():
        value = args.get(flag)
        if (
            isinstance(value, str) and value.lower() not in checked
        ):  # (other types are the flags check's errors)
            what, files = (
                ("tokenizer", "tekken.json, tiktoken.model...")
                if flag == "tokenizer-mode"
                else ("configuration", "params.json...")
            )
            yield at(
                deployment,
                ("vllm", "args", flag),
                f"{flag} {value} makes vLLM read the model's {what} from files the "
                f"deployer does not check ({files}), in place of the Hugging Face files it "
                "does",
                hint=f"review those files in the model folder as unchecked, or leave {flag} out",
                rule="model.unchecked-format",
                severity=Severity.WARNING,
                key=False,
            )


def _mapping(value: object) -> dict:
    """A JSON flag's top level, given as a mapping or as JSON text (text that does not parse is
    the flags check's error)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _other_models(
    deployment: Deployment, items, yaml_path: tuple, where: str
) -> Iterable[Diagnostic]:
    for key, value in items:
        if isinstance(key, str) and LOADS_MODEL.search(key) and isinstance(value, str) and value:
            yield at(
                deployment,
                yaml_path,
                f"{where} names another model to load ({key}: {value!r}): vLLM reads its "
                "config and weights too (a Hub repo at its newest revision, or a folder), "
                "which the deployer does not check",
                hint="review that model as part of this one; only the base model's own files "
                "are checked",
                rule="model.config-loads-model",
                severity=Severity.WARNING,
                key=False,
            )
            return


def _mistral_format(deployment: Deployment, where: str) -> Iterable[Diagnostic]:
    source = deployment.base_model.source
    if source.path is None or mistral_asked(deployment):  # (asked for: a warning of its own)
        return
    if (
        found := once(("mistral weights", source.path), lambda: _first_mistral_file(source.path))
    ) is not None:
        yield at(
            deployment,
            ("base_model",),
            f"{where} holds {found}: beside Mistral-format weights vLLM loads those, with "
            "params.json as the config and tekken.json as the tokenizer when present, in "
            "place of the config.json, weights and tokenizer the deployer checked",
            hint=f"remove the {MISTRAL_WEIGHTS} files (vLLM then serves the Hugging Face-format "
            "ones), or set vllm.args load-format: mistral to serve them unchecked",
            rule="model.mistral-format",
            key=False,
        )


def _first_mistral_file(folder: Path) -> str | None:
    """The first Mistral-format weight file in `folder` or below, as vLLM looks (each file's name)."""
    try:
        for parent, _, files in walk(folder):
            if name := next((n for n in files if fnmatch(n, MISTRAL_WEIGHTS)), None):
                return str((parent / name).relative_to(folder))
    except TooDeep:
        pass  # (the sources check refuses such a folder)
    return None
