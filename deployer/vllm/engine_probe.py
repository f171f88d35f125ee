"""The engine check's driver: run by the interpreter that has the pinned vLLM, not by the deployer.

It hands each command line to that vLLM's own argument parser, its serve-argument validation and its
engine configuration (`AsyncEngineArgs.from_cli_args(args).create_engine_config()`, which needs no
GPU), and says what refused it. Standard library and vllm only: the deployer is not installed
there. `deployer/vllm/engine.py` runs it and `deployer/checks/engine.py` places what it says; both
share `mentioned` with it, so the flag dropped here is the flag placed there.

Reads {"jobs": [...], "rounds": N, "chars": N} as JSON on stdin. A job is {"id", "head": [...],
"groups": [[flag, [tokens]], ...], "tail": [...], "engine": bool, "env": {...}}: its command is head,
then every group's tokens, then tail. When vLLM refuses a command and its message names a group's
flag, the driver drops that group and tries again (up to `rounds` times), so one run finds every
problem vLLM would report one start at a time. Writes one JSON line per job as soon as it is done:
{"id", "refusals": [{"stage", "type", "message", "frames", "dropped"}], "ran": [stages]}.
"""

import json
import os
import re
import sys
import traceback

PARSER_MODULES = (
    "vllm.entrypoints.common.cli_args",  # 0.33
    "vllm.entrypoints.launchers.cli_args",  # 0.29 - 0.32
    "vllm.entrypoints.openai.cli_args",  # up to 0.28
)
FLEXIBLE_PARSER_MODULES = ("vllm.utils.argparse_utils", "vllm.utils")
MAX_FRAMES = 40  # innermost frames kept per refusal: enough to see whether a platform raised it


def spellings(flag: str) -> list[str]:
    """How vLLM's messages name a flag: `--max-model-len`, the config field `max_model_len` (alone
    or in pydantic's `hf_overrides.dict`), in words (`Reasoning parser 'x'`), or the config class
    a JSON flag fills (`SpeculativeConfig` for speculative-config)."""
    parts = flag.split("-")
    return list(
        dict.fromkeys(
            [flag, "_".join(parts), " ".join(parts), "".join(p.capitalize() for p in parts)]
        )
    )


# pydantic's `[type=value_error, input_value=ArgsKwargs((), {'max_model_len': ...}), ...]`:
# every field of the config, named or not in the error.
PYDANTIC_INPUT = re.compile(r"\s*\[type=.*?input_type=\w+\]")


def mentioned(message: str, flags) -> list:
    """The flags of `flags` that `message` names, in the order it first names them."""
    message = PYDANTIC_INPUT.sub("", message)
    found = []
    for flag in dict.fromkeys(flags):
        alternatives = "|".join(re.escape(s) for s in spellings(flag))
        pattern = rf"(?<![\w-])(?:--)?(?:{alternatives})(?![\w-])"
        match = re.search(pattern, message, re.IGNORECASE)
        if match:
            found.append((match.start(), flag))
    return [flag for _, flag in sorted(found, key=lambda pair: pair[0])]


class Refused(Exception):
    """vLLM's argument parser said no (it would print usage and exit)."""


def _first(modules, name):
    import importlib

    for module in modules:
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _frames(exc: BaseException) -> list:
    """Where the exception and the ones it was raised from passed, innermost last, as paths from
    the package folder (`vllm/platforms/cpu.py:120`)."""
    frames, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            path = frame.filename.replace(os.sep, "/")
            cut = path.rfind("/vllm/")
            frames.append(f"{path[cut + 1 :] if cut >= 0 else path}:{frame.lineno}")
        exc = exc.__cause__ or exc.__context__
    return frames[-MAX_FRAMES:]


def _load():
    # Forced before anything else imports vllm: the CUDA wheel picks its platform at import and
    # fails on a machine without a GPU; the CPU build picks this one anyway. One platform
    # everywhere, so validate says the same on a laptop and on a GPU runner.
    import vllm.platforms

    try:
        from vllm.platforms.cpu import CpuPlatform

        vllm.platforms._current_platform = CpuPlatform()
    except ImportError:
        pass
    from vllm.engine.arg_utils import AsyncEngineArgs

    make_arg_parser = _first(PARSER_MODULES, "make_arg_parser")
    validate = _first(PARSER_MODULES, "validate_parsed_serve_args")
    parser_class = _first(FLEXIBLE_PARSER_MODULES, "FlexibleArgumentParser")
    parser = make_arg_parser(parser_class())

    def refuse(message, *_):
        raise Refused(message)

    parser.error = refuse  # argparse would print usage and exit
    parser.exit = lambda status=0, message=None: refuse(message or f"exit {status}")
    return parser, validate, AsyncEngineArgs


def _check(job, groups, parser, validate, engine_args, ran):
    argv = [*job["head"], *(t for _, tokens in groups for t in tokens), *job["tail"]]
    args = parser.parse_args(argv)
    ran.add("parse")
    if validate is not None:
        validate(args)
        ran.add("serve")
    if job.get("engine"):
        engine_args.from_cli_args(args).create_engine_config()
        ran.add("engine")


def _run(job, rounds, chars, parser, validate, engine_args) -> dict:
    groups = [(flag, tokens) for flag, tokens in job["groups"]]
    refusals, ran = [], set()
    saved = {name: os.environ.get(name) for name in job.get("env", {})}
    os.environ.update(job.get("env", {}))
    try:
        for _ in range(rounds):
            try:
                _check(job, groups, parser, validate, engine_args, ran)
                break
            except (Exception, SystemExit) as exc:
                stage = next(s for s in ("parse", "serve", "engine") if s not in ran)
                said = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                message = str(said) or type(exc).__name__  # a KeyError's str() is a repr
                named = mentioned(message, [flag for flag, _ in groups])
                refusals.append(
                    {
                        "stage": stage,
                        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                        "message": message[:chars],
                        "frames": _frames(exc),
                        "dropped": named[0] if named else None,
                    }
                )
                if not named:
                    break
                groups = [(flag, tokens) for flag, tokens in groups if flag != named[0]]
                ran.clear()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return {"id": job["id"], "refusals": refusals, "ran": sorted(ran)}


def main() -> None:
    # Results go to a copy of stdout; vLLM's own output (logs, warnings, prints) goes to stderr.
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    request = json.load(sys.stdin)
    parser, validate, engine_args = _load()
    for job in request["jobs"]:
        outcome = _run(job, request["rounds"], request["chars"], parser, validate, engine_args)
        results.write(json.dumps(outcome) + "\n")
        results.flush()


if __name__ == "__main__":
    main()
