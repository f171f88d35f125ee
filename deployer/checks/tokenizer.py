"""The base model's tokenizer files (tokenizer_config.json, special_tokens_map.json, ...), which
the pull request can commit (or a Hub repo it names can hold): transformers passes their keys to
the tokenizer's constructor, and some are files it opens as written. `"vocab":
"/proc/self/environ"` (BertTokenizer, transformers 5) or `"vocab_file"` (transformers 4) makes the
container's environment, Secrets included, token 0, which /detokenize gives back to any caller
with the key."""

from __future__ import annotations

import re
from typing import Iterable

from deployer.checks._at import at
from deployer.checks.flags import HUB_OR_KEYWORD, container_path, is_system_path, walk_json
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.sources.base_model import tokenizer_files
from deployer.sources.lock import as_downloaded
from deployer.spec.model import Deployment, Source
from deployer.vllm.argv import tokenizer_revision

# Constructor arguments that name files: vocab_file, merges_file, tokenizer_file, spm_file, ...
# (each tokenizer class has its own), and transformers 5's vocab and merges (a path, or the data).
FILE_KEY = re.compile(
    r"(^|_)(vocab|merges|files?|path|dir|folder|spm)$"
)  # spm: Marian's source_spm, target_spm
NOT_READ = (
    "name_or_path",
    "_name_or_path",
)  # where it was saved from: transformers only records it
PATH_LIKE = re.compile(r"^(/|~|\.\.?(/|$))|/\.\.(/|$)")
CLIMBS = re.compile(
    r"(^|/)\.\.(/|$)"
)  # transformers joins some names to the model folder, wherever that is


def check_tokenizer_files(deployment: Deployment) -> Iterable[Diagnostic]:
    """The tokenizer vLLM loads: the base model's, or a Hub repo that `vllm.args.tokenizer`
    names (a local one is a `flags.reads-file` warning already)."""
    args = dict(deployment.vllm.args)
    named = args.get("tokenizer")
    if isinstance(named, str) and HUB_OR_KEYWORD.match(named) and "/" in named:
        source, where, yaml_path = (
            Source(repo=named, revision=tokenizer_revision(deployment)),
            named,
            ("vllm", "args", "tokenizer"),
        )
    elif (
        deployment.base_model.info is not None
    ):  # (None: not read, a folder the sources check refuses)
        source, yaml_path = deployment.base_model.source, ("base_model",)
        where = source.describe()
        source = as_downloaded(source, deployment.lock)  # what the app downloads
    else:
        return
    for filename, content in tokenizer_files(source).items():
        if isinstance(content, str):
            yield at(
                deployment,
                yaml_path,
                f"cannot read {where}/{filename} ({content}), which the tokenizer reads, "
                "so what it names cannot be judged",
                hint=f"make {filename} a JSON object of at most a few kilobytes, as "
                "transformers writes it",
                rule="model.tokenizer-unreadable",
                key=False,
            )
        else:
            yield from _findings(deployment, content, f"{where}/{filename}", yaml_path)


def system_files(config: dict, skipped: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(key, value) of each path-like value in `config`, or value under a file-naming key, that
    leads to a system file in the container or climbs with `..` (values under `skipped` keys aside)."""
    return _system(_named(config, skipped))


def _named(config: dict, skipped: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    # Every value, with no MAX_JSON_NODES cut: a cut would leave unjudged a key nested after a
    # 200 KB list. The file's size (MAX_JSON_BYTES) bounds the walk.
    return [
        (str(k), v)
        for k, v in walk_json(config)
        if isinstance(v, str)
        and v
        and k not in skipped
        and (
            PATH_LIKE.search(v) or (isinstance(k, str) and FILE_KEY.search(k) and k not in NOT_READ)
        )
    ]


def _system(named: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (k, v)
        for k, v in named
        if CLIMBS.search(v)
        or (
            (path := container_path(v if PATH_LIKE.search(v) else "./" + v))
            and is_system_path(path)
        )
    ]


def _findings(
    deployment: Deployment, config: dict, where: str, yaml_path: tuple
) -> Iterable[Diagnostic]:
    named = _named(config)
    if system := _system(named):
        key, value = system[0]
        yield at(
            deployment,
            yaml_path,
            f"{where} names {value!r} ({key}), a system file in the container or a path "
            "climbing out of the model folder: the tokenizer would read it into its "
            "vocabulary, and the container's Secrets are in /proc/self/environ",
            hint=f"remove {key}; the tokenizer's files belong in the model folder, found by "
            "their standard names",
            rule="model.tokenizer-reads-system-file",
            key=False,
        )
    elif files := [(k, v) for k, v in named if FILE_KEY.search(k) and k not in NOT_READ]:
        key, value = files[0]
        yield at(
            deployment,
            yaml_path,
            f"{where} names a file for the tokenizer to open as written ({key}: "
            f"{value!r}), in place of the model folder's own",
            hint="review it: callers can read a tokenizer's vocabulary back (/detokenize); "
            f"remove {key} unless the model needs it",
            rule="model.tokenizer-reads-file",
            severity=Severity.WARNING,
            key=False,
        )
