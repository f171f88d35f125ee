"""Read the base model's `config.json` and its weights' tensor index (names, dtypes, shapes) from
safetensors headers, without loading any weights.

Local models are read from their folder; a Hub model's config.json at the commit the lock pins
(else at the revision the YAML names) from the local Hugging Face cache, else from the Hub unless
offline; safetensors headers only from the cache
(weights are never downloaded here). The LoRA compatibility check uses the tensor names to know
which modules the architecture has; the GPU fit check, the sizes. A weights file shorter or longer
than its header says makes the model unreadable: vLLM would fail to load it.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Collection

from deployer.core.budget import once, parsed_json, read_json
from deployer.core.limits import (
    MAX_COUNT,
    MAX_DIMS,
    MAX_HEADER_BYTES,
    MAX_HEADERS_BYTES,
    MAX_INDEX_BYTES,
    MAX_RUN_TENSORS,
    MAX_SHARDS,
    MAX_TENSOR_NAME_CHARS,
    MAX_TENSOR_NAME_PARTS,
    MAX_TENSORS,
)
from deployer.core.paths import real, within
from deployer.sources import hub
from deployer.sources.lock import as_downloaded
from deployer.spec.model import BaseModelInfo, Deployment, Source, UnknownConfig


def _locate(source: Source, filename: str) -> Path | None:
    # Shard names come from the model's index file: one that climbs out of the model folder (or
    # points at /proc/self/environ) must not be opened.
    if (
        PurePosixPath(filename).is_absolute()
        or ".." in PurePosixPath(filename).parts
        or "\\" in filename
    ):
        raise ValueError(f"a weight file named {filename!r} would lie outside the model folder")
    if source.path is not None:
        path = source.path / filename
        if not within(path, source.path):
            raise ValueError(f"weight file {filename!r} links outside the model folder")
        return path if path.is_file() else None
    return hub.cached_path(source.repo, filename, source.revision)


def _header_length(path: Path) -> int:
    with open(path, "rb") as handle:
        raw = handle.read(8)
    return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0


class WrongSize(ValueError):
    """A safetensors file shorter or longer than its header says: vLLM cannot load it."""


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name → (dtype, shape), from the JSON header of a .safetensors file (read once per
    file version: deployments sharing a base, and shards linked to one file, cost one read).
    Raises WrongSize when the file does not hold the data its header describes."""
    _check_header_fits(path)
    tensors, data_end = parsed_json(
        path, lambda: _header_bytes(path), lambda raw: _parse(path.name, raw)
    )
    _check_data_fits(path, data_end)
    return tensors


def check_safetensors_size(path: Path) -> None:
    """Raises WrongSize when the safetensors file at `path` is shorter or longer than its header
    says (safetensors, and so vLLM, refuses such a file: a copy or download cut short). A file
    that is no safetensors file at all is left to what reads it."""
    if os.stat(path).st_size < 8 or _header_length(path) > MAX_HEADER_BYTES:
        return
    _check_header_fits(path)
    # Only an integer is kept per file version, so the header is not charged to the run's budget
    # for parsed configs and headers (which bounds what stays in memory).
    data_end = once(
        ("safetensors data end", *_version(path)), lambda: _data_end(_json(_header_bytes(path)))
    )
    _check_data_fits(path, data_end)


def _version(path: Path) -> tuple[int, int, int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _check_header_fits(path: Path) -> None:
    size, length = os.stat(path).st_size, _header_length(path)
    if size >= 8 and length <= MAX_HEADER_BYTES and 8 + length > size:
        raise WrongSize(
            f"{path.name} is cut short: its header alone should take {length:,} bytes, and "
            f"the file holds {size - 8:,} after its 8-byte length (copy or download it again)"
        )


def _check_data_fits(path: Path, data_end: int | None) -> None:
    if data_end is None:
        return
    size = os.stat(path).st_size
    held = size - 8 - _header_length(path)
    if held != data_end:
        state = "cut short" if held < data_end else "longer than its header says"
        raise WrongSize(
            f"{path.name} is {state}: its header describes {data_end:,} bytes of tensors, and "
            f"the file holds {held:,} after the header"
            + (" (copy or download it again)" if held < data_end else "")
        )


def _json(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _data_end(header: object) -> int | None:
    """Where the tensors' data ends, after the header, by the header's `data_offsets`; None when
    the header is no JSON object or a tensor has no offsets (the size cannot be judged)."""
    if not isinstance(header, dict):
        return None
    end = 0
    for tensor, meta in header.items():
        if tensor == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in offsets)
        ):
            return None
        end = max(end, offsets[1])
    return end


def _header_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > MAX_HEADER_BYTES:
            raise ValueError(
                f"{path.name} is not a safetensors file (its header length is implausible)"
            )
        return handle.read(length)


def _parse(name: str, raw: bytes) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int | None]:
    """(the tensors, where their data ends), from one reading of the header."""
    header = json.loads(raw)
    return _tensors(name, header), _data_end(header)


def _tensors(name: str, header: object) -> dict[str, tuple[str, tuple[int, ...]]]:
    if not isinstance(header, dict):
        raise ValueError(f"{name}: the header is not a JSON object")
    # Every tensor kept costs memory until the run ends: counted over all headers of the run.
    spent = once(("safetensors tensors read",), lambda: [0])
    spent[0] += len(header)
    if len(header) > MAX_TENSORS:
        raise ValueError(
            f"{name} lists {len(header):,} tensors; no model has more than {MAX_TENSORS:,}"
        )
    if spent[0] > MAX_RUN_TENSORS:
        raise ValueError(
            f"this run has read {MAX_RUN_TENSORS:,} tensors' headers already, from every "
            "base model together; the rest are not read"
        )
    tensors = {}
    for tensor, meta in header.items():
        if tensor == "__metadata__":
            continue
        if len(tensor) > MAX_TENSOR_NAME_CHARS or tensor.count(".") >= MAX_TENSOR_NAME_PARTS:
            raise ValueError(f"{name}: a tensor name of {len(tensor):,} characters is no model's")
        shape = meta.get("shape") if isinstance(meta, dict) else None
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_DIMS
            or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_COUNT
                for n in shape
            )
            or math.prod(shape) > MAX_COUNT
        ):
            raise ValueError(
                f"{name}: tensor {tensor[:80]!r} has no valid shape (at most {MAX_DIMS} "
                "dimensions, at most 2**53 elements)"
            )
        tensors[tensor] = (str(meta.get("dtype")), tuple(shape))
    return tensors


def read_base_model(source: Source) -> BaseModelInfo | UnknownConfig:
    where = source.describe()
    if source.path is not None:
        config_path = source.path / "config.json"
        if not config_path.is_file():
            return UnknownConfig(f"config.json is missing from {where}", definite=True)
        try:
            config = read_json(config_path)
        except (OSError, ValueError, RecursionError) as exc:
            return UnknownConfig(
                f"cannot read {config_path}: {type(exc).__name__}: {exc}", definite=True
            )
        if not isinstance(config, dict):
            return UnknownConfig(f"{config_path} is not a JSON object", definite=True)
        read_from = str(source.path)
    else:
        config, found = hub.read_json(source.repo, "config.json", source.revision)
        if isinstance(found, hub.Missing):
            return UnknownConfig(found.reason, definite=found.definite)
        if config is None:
            return UnknownConfig(f"{found.where} is not a JSON object", definite=True)
        read_from = found.where

    tensors: dict[str, tuple[str, tuple[int, ...]]] | None = {}
    try:
        index = _locate(source, "model.safetensors.index.json")
        if index is not None:
            weight_map = read_json(index, MAX_INDEX_BYTES)["weight_map"]
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()
            ):
                raise ValueError(
                    f"{index.name}: weight_map is not a mapping of tensor names to files"
                )
            shards = sorted(set(weight_map.values()))
            if len(shards) > MAX_SHARDS:  # before resolving any
                raise ValueError(
                    f"{index.name} names {len(shards):,} weight files; no model has more "
                    f"than {MAX_SHARDS:,}"
                )
        else:
            shards = ["model.safetensors"]
        files: dict[Path, Path] = {}  # where each shard really is → a path to it
        for shard in shards:
            shard_path = _locate(source, shard)
            if shard_path is None:
                tensors = None  # weights not available here: names and sizes unknown
                break
            files.setdefault(
                real(shard_path) or shard_path, shard_path
            )  # linked names: one file, read once
        if tensors is not None:
            if sum(map(_header_length, files.values())) > MAX_HEADERS_BYTES:  # before parsing any
                raise ValueError(
                    f"its shards' headers add up to more than {MAX_HEADERS_BYTES >> 20} "
                    "MiB, which no model's do"
                )
            for shard_path in files.values():
                tensors.update(safetensors_header(shard_path))
    except WrongSize as exc:
        return UnknownConfig(str(exc), definite=True)
    except (OSError, ValueError, KeyError, TypeError, RecursionError, struct.error) as exc:
        return UnknownConfig(f"cannot read the safetensors headers of {where}: {exc}")
    return BaseModelInfo(config=config, tensors=tensors, read_from=read_from)


# Files whose keys transformers passes to the tokenizer's (or processor's) constructor: with no
# added_tokens_decoder in tokenizer_config.json, every key of special_tokens_map.json becomes an
# argument too (`"vocab": "/proc/self/environ"` there is as dangerous as in the first file).
# A processor also loads the tokenizer audio_tokenizer_config.json names, from any path or repo.
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
    "audio_tokenizer_config.json",
)


def tokenizer_files(source: Source) -> dict[str, dict | str]:
    """Each of TOKENIZER_FILES the model has, from the folder or the Hub: its content, or why it
    cannot be read (vLLM would read it anyway: it must be judged, not skipped)."""

    def read(filename: str) -> dict | str | None:
        if source.path is not None:
            path = source.path / filename
            if not os.path.lexists(path):
                return None
            if not within(path, source.path):
                return "it leads outside the model folder"  # (the sources check says so too)
            try:
                data = read_json(path)
            except (OSError, ValueError, RecursionError) as exc:
                return f"{type(exc).__name__}: {exc}"
        else:
            data, found = hub.read_json(source.repo, filename, source.revision)
            if isinstance(found, hub.Missing):
                return (
                    found.reason if found.present else None
                )  # (a missing repo is config.json's finding)
        return data if isinstance(data, dict) else "it is not a JSON object"

    return once(
        ("tokenizer files", source),
        lambda: {f: found for f in TOKENIZER_FILES if (found := read(f)) is not None},
    )


def with_base_model_info(deployment: Deployment, unread: Collection[Source] = ()) -> Deployment:
    """The deployment with its base model's config and tensor index attached, read at its locked
    commit when `deployment.lock` pins one (left unlooked-up when its source is in `unread`,
    refused by the sources check)."""
    base = deployment.base_model
    if base.source in unread:
        return deployment
    source = as_downloaded(base.source, deployment.lock)
    info = once(
        ("base model", source), lambda: read_base_model(source)
    )  # shared by every deployment on it
    return replace(deployment, base_model=replace(base, info=info))
