"""`deployer new`: write deployments/NAME.yaml for one or more Hub adapters, every choice derived
and commented (vllm/scaffold.py decides; this module reads, checks and writes).

The file is validated in memory before it is written, and written only if no file is there: a
deployment is never overwritten. Where a lock exists, the new deployment is locked as
`deployer adapter add` locks an edit.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

from deployer.cli.common import EXIT_OK, EXIT_PROBLEMS, UsageError, folder_options

DESCRIPTION = """\
Write deployments/NAME.yaml serving the given Hub adapters. The base model is the one the adapters
name in their adapter_config.json (or --base); the GPU is the cheapest that holds a useful context
beside the model (or --gpu), with max-model-len chosen to fit it; the endpoint asks for an API key
held in the Modal Secret NAME-api-key. Each choice is commented in the file. The file is validated
before it is written, and an existing file is never overwritten. Where the Hub cannot be reached,
the command says what it could not read and what it assumed. Where lock/ exists, the new
deployment is locked too."""

EPILOG = """\
examples:
  deployer new chess --adapter pilipolio/chess-puzzle-sft-qwen3-4b
  deployer new support --adapter org/support-lora@v2 --adapter org/billing-lora --gpu L40S
  deployer new chess --adapter org/chess-lora --base Qwen/Qwen3-4B-Instruct-2507
"""


def register(commands) -> None:
    new = commands.add_parser(
        "new",
        parents=[folder_options(out=False)],
        help="write a new deployment file for Hub adapters, every choice commented",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument("name", metavar="NAME", help="the deployment (its file, Modal app and URL)")
    new.add_argument(
        "--adapter",
        dest="adapters",
        action="append",
        required=True,
        metavar="REPO[@REV]",
        help="a LoRA adapter on the Hub, with a branch, tag or commit after @; repeat for more",
    )
    new.add_argument("--gpu", metavar="GPU", help="the GPU (default: the cheapest that fits)")
    new.add_argument(
        "--base", metavar="REPO", help="the base model (default: the one the adapters name)"
    )
    new.set_defaults(run=cmd_new)


def cmd_new(args) -> int:
    from deployer.spec.schema import schema
    from deployer.vllm import scaffold
    from deployer.vllm.argv import VLLM_DEFAULT_MAX_LORA_RANK

    _check_arguments(args, schema())
    try:
        sources = scaffold.adapter_sources(args.adapters)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    file = args.deployments / f"{args.name}.yaml"
    if taken := _taken(args.deployments, args.name):
        print(f"deployer new: {taken} already exists; nothing written", file=sys.stderr)
        return EXIT_PROBLEMS

    configs = [(source, _adapter_config(source)) for source in sources]
    base = scaffold.choose_base(configs, args.base)
    if isinstance(base, str):
        print(f"deployer new: {base}; nothing written", file=sys.stderr)
        return EXIT_PROBLEMS
    draft = scaffold.NewDeployment(
        name=args.name,
        base=base[0],
        base_why=base[1],
        adapters=tuple(sources),
        gpu=args.gpu or scaffold.ASSUMED_GPU,
        vllm_version=_vllm_version(args.deployments),
        sizing=None,
    )
    checked = _check(file, scaffold.compose(draft))
    if not checked.deployments:
        return _refuse(file, checked)
    sized = scaffold.size(checked.deployments[0], gpu_given=args.gpu is not None)
    if isinstance(sized, str):
        print(f"deployer new: {sized}; nothing written", file=sys.stderr)
        return EXIT_PROBLEMS
    lora_why, unread = scaffold.lora_why(checked.deployments[0])
    new = _replace(draft, gpu=sized.gpu, sizing=sized, lora_why=lora_why)
    text = scaffold.compose(new)
    checked = _check(file, text)
    if not checked.ok or not checked.deployments:
        return _refuse(file, checked)
    for fact in unread:
        print(
            f"deployer new: could not read the rank of {fact}; assumed it fits vLLM's default "
            f"max-lora-rank {VLLM_DEFAULT_MAX_LORA_RANK}",
            file=sys.stderr,
        )
    if sized.assumed:
        print(f"deployer new: could not read {sized.assumed}", file=sys.stderr)
    return _write(args, file, text, checked.deployments[0], new)


def _check_arguments(args, spec: dict) -> None:
    from deployer.core.text import did_you_mean

    complaints = []
    if not re.fullmatch(spec["properties"]["name"]["pattern"], args.name):
        complaints.append(f"{args.name!r}: {spec['properties']['name']['x-hint']}")
    if args.base is not None and not re.fullmatch(spec["$defs"]["hub_repo"]["pattern"], args.base):
        complaints.append(f"--base {args.base}: {spec['$defs']['hub_repo']['x-hint']}")
    gpu = spec["properties"]["gpu"]["oneOf"][0]
    if args.gpu is not None and not re.fullmatch(gpu["pattern"], args.gpu):
        hint = did_you_mean(args.gpu.partition(":")[0].upper(), gpu["examples"])
        complaints.append(f"--gpu {args.gpu}: {hint + ' ' if hint else ''}{gpu['x-hint']}")
    if complaints:
        raise UsageError(*complaints)


def _taken(folder: Path, name: str) -> Path | None:
    """The file already holding deployment `name` (NAME.yaml, NAME.yml, or a file whose `name:`
    is NAME), if any."""
    from deployer.checks.pipeline import YAML_SUFFIXES
    from deployer.spec.load import DEFAULTS_FILE, load_file

    for suffix in YAML_SUFFIXES:
        if os.path.lexists(folder / f"{name}{suffix}"):
            return folder / f"{name}{suffix}"
    for file in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        if file.suffix in YAML_SUFFIXES and file.name != DEFAULTS_FILE:
            document, _ = load_file(file)
            data = document.data if document else None
            if isinstance(data, dict) and data.get("name") == name:
                return file
    return None


def _adapter_config(source):
    from deployer.sources.adapters import read_config
    from deployer.spec.model import Adapter, Source

    return read_config(Adapter(source.name, Source(repo=source.repo, revision=source.revision)))


def _vllm_version(folder: Path) -> str | None:
    """None when deployments/_defaults.yaml sets vllm.version; else the newest version the
    deployer has vLLM's flags for."""
    from deployer.spec.load import DEFAULTS_FILE, load_file
    from deployer.vllm.catalog import available_versions

    defaults = folder / DEFAULTS_FILE
    if defaults.is_file():
        document, _ = load_file(defaults)
        data = document.data if document else None
        vllm = data.get("vllm") if isinstance(data, dict) else None
        if isinstance(vllm, dict) and "version" in vllm:
            return None
    return available_versions()[-1]


def _replace(new, **changes):
    import dataclasses

    return dataclasses.replace(new, **changes)


def _check(file: Path, text: str):
    from deployer.checks.pipeline import check_paths

    return check_paths([file], replaced={Path(os.path.abspath(file)): text.encode("utf-8")})


def _refuse(file: Path, checked) -> int:
    import dataclasses

    from deployer.core.diagnostics import render_text

    # Lines are those of the text composed, which is not on disk: no excerpt of a file.
    errors = [dataclasses.replace(d, file=f"{d.file} (new)") for d in checked.diagnostics]
    print(render_text([d for d in errors if d.is_error]), file=sys.stderr)
    print(f"deployer new: {file} would not validate; nothing written", file=sys.stderr)
    return EXIT_PROBLEMS


def _write(args, file: Path, text: str, deployment, new) -> int:
    from deployer.cli.adapter import _lock_update, _write_lock

    lock = _lock_update(file.parent, deployment, "new")
    if lock is False:
        return EXIT_PROBLEMS
    if not _write_new(file, text):
        print(f"deployer new: {file} already exists; nothing written", file=sys.stderr)
        return EXIT_PROBLEMS
    names = ", ".join(a.name for a in new.adapters)
    print(
        f"wrote {file}: {names} on {new.base}, {new.gpu}, max-model-len "
        f"{new.sizing.max_model_len}\nnext: modal secret create {new.name}-api-key "
        f"VLLM_API_KEY=...; deployer fit {new.name}; deployer plan"
    )
    if lock is not None:
        return _write_lock(file.parent, lock, "new")
    return EXIT_OK


def _write_new(file: Path, text: str) -> bool:
    """Write `file` whole, at once, only if nothing is there (False if something is): a reader
    sees no file or all of it, and a file written meanwhile is never replaced."""
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.parent / f".{file.name}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.link(temporary, file)  # fails, rather than replaces, when the file exists
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True
