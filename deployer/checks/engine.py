"""The engine check: what the pinned vLLM itself refuses in a deployment's command line, placed at
the flag it names (`validate` only, when DEPLOYER_VLLM_PYTHON names a Python with that vLLM).

The catalog checks know each flag alone; vLLM also refuses combinations (`enable-auto-tool-choice`
without `tool-call-parser`), values its config classes reject (unknown keys in
`compilation-config`) and values that depend on the model (`max-num-batched-tokens` below
`max-model-len`). Its parser, its serve-argument validation and its engine configuration run in a
child process (vllm/engine.py), offline and without credentials; flags that would make it import
code or read files the YAML names are left out. A deployment with errors from the other checks is
not handed over: vLLM would mostly say the same again.
"""

from __future__ import annotations

import re
from typing import Sequence

from deployer.checks._at import at
from deployer.checks.flags import (
    CODE_FLAGS,
    FILE_FLAGS,
    IMPORTING_VALUES,
    PLAIN_VALUES,
    addresses_in,
    code_named_in,
    flag_meant,
    json_items,
    options_passed,
    paths_in,
)
from deployer.core.diagnostics import Diagnostic, Severity, printable
from deployer.spec.model import Deployment
from deployer.vllm import catalog, engine
from deployer.vllm.argv import flag_tokens
from deployer.vllm.engine_probe import PYDANTIC_INPUT, mentioned

SHOWN_MESSAGE = 600  # characters of vLLM's message in a finding (the rest is its traceback's)
# Where a flag the deployer sets comes from in the YAML: a refusal naming it is placed there.
OWNERS: dict[str, tuple[str, ...]] = {
    "model": ("base_model",),
    "served-model-name": ("base_model",),
    "revision": ("base_model",),
    "tokenizer-revision": ("base_model",),
    "enable-lora": ("adapters",),
    "lora-modules": ("adapters",),
    "max-lora-rank": ("adapters",),
    "max-loras": ("adapters",),
    "tensor-parallel-size": ("gpu",),
    "enable-sleep-mode": ("cold_start", "gpu_snapshot"),
    "sleep-mode": ("cold_start", "gpu_snapshot"),
    "lora": ("adapters",),
}
# Refusals that say more about where the check runs than about the deployment: the CPU platform
# (raised in vllm/platforms/, or naming a platform or device), the Hub (the check runs offline),
# and, for a Hub model, files of the model other than the config.json the deployer read.
DEVICE_WORDS = re.compile(r"\b(CPU|GPU|CUDA|ROCm|XPU|TPU|HPU|NPU)s?\b")
HUB_WORDS = re.compile(
    r"repository id|hugging ?face|offline|HF_HUB|couldn't connect|local_files_only|"
    r"LocalEntryNotFound|OfflineModeIsEnabled",
    re.IGNORECASE,
)
MISSING_FILE = re.compile(
    r"(cannot|can't|could not|couldn't|unable to) (find|locate|open)|no such file|does not exist",
    re.IGNORECASE,
)
# A list of what vLLM takes, at the end of its message: the hint gives it instead.
CHOICES = re.compile(r"(Available [\w ]+?:|[Mm]ust be one of:?) \[?([^\]\n]+)")
DEFAULT_HINT = "fix the flag as vLLM's message says"


def check_engine(
    deployments: Sequence[Deployment], found: Sequence[Diagnostic], python: str | None
) -> list[Diagnostic]:
    """Notes and errors of the engine check for `deployments`, given what the other checks
    `found` (a deployment with errors in its files is skipped) and the interpreter (`python`,
    from DEPLOYER_VLLM_PYTHON; None: unset)."""
    if not python:
        return [
            _note(
                d,
                f"the engine check did not run: {engine.VLLM_PYTHON_ENV} is not set",
                f"set {engine.VLLM_PYTHON_ENV} to a Python with vLLM {d.vllm.version} (a CPU "
                "build is enough) and validate also hands the command line to vLLM's own "
                "parser and configuration checks",
            )
            for d in deployments
        ]
    with_errors = {d.file for d in found if d.is_error}
    results: list[Diagnostic] = []
    ready: list[Deployment] = []
    for deployment in deployments:
        if with_errors & set(deployment.sources):
            results.append(
                _note(
                    deployment,
                    "engine check skipped until the errors above are fixed",
                    "fix the errors; validate then hands the command line to vLLM",
                )
            )
        else:
            ready.append(deployment)
    if not ready:
        return results  # nothing to hand over: the interpreter is not even asked its version
    installed = engine.installed_vllm(python)
    if isinstance(installed, str):
        return results + [
            _note(
                d,
                f"the engine check did not run: {engine.VLLM_PYTHON_ENV} ({python}): {installed}",
                f"point {engine.VLLM_PYTHON_ENV} at a Python with vLLM {d.vllm.version}",
            )
            for d in ready
        ]
    commands: dict[str, engine.Command] = {}
    for index, deployment in enumerate(ready):
        if deployment.vllm.version != installed.version:
            results.append(
                _note(
                    deployment,
                    f"the engine check did not run: {python} has vLLM {installed.version} "
                    f"({installed.distribution}), not the pinned {deployment.vllm.version}",
                    f"point {engine.VLLM_PYTHON_ENV} at a Python with vLLM "
                    f"{deployment.vllm.version} to check it",
                )
            )
            continue
        left_out = code_or_file_flags(deployment)
        if left_out:
            results.append(_left_out_note(deployment, left_out))
        commands[str(index)] = engine.command(deployment, left_out)
    run = engine.run(installed, commands)
    for key, command in commands.items():
        deployment = ready[int(key)]
        outcome = run.outcomes.get(key)
        if outcome is None:
            results.append(
                _note(
                    deployment,
                    f"the engine check did not judge this deployment: vLLM {installed.version} "
                    f"at {python}: {run.problem}",
                    "run validate again; if it keeps failing, run the deployment with "
                    "`deployer serve NAME --local` to see vLLM's own output",
                )
            )
            continue
        if command.model is None and "engine" not in outcome.ran:
            results.append(
                _note(
                    deployment,
                    "vLLM's engine configuration was not checked (its parser and serve-argument "
                    f"checks were): the base model's config is unknown ({command.model_missing})",
                    "download the model's config.json once (`hf download REPO config.json`)",
                )
            )
        results.extend(
            _refusal(deployment, command, r, installed.version) for r in outcome.refusals
        )
    return results


def code_or_file_flags(deployment: Deployment) -> list[str]:
    """The `vllm.args` entries the engine check leaves out: those whose flag imports code, reads
    a file, or connects somewhere (checks/flags.py's lists), and JSON values naming code, paths
    or addresses. vLLM judges them when the app starts."""
    flags = catalog.load(deployment.vllm.version)
    left_out = []
    for name, value in deployment.vllm.args:
        items = json_items(value)
        sensitive = bool(
            code_named_in(name, value, items) or paths_in(items) or addresses_in(items)
        )
        tokens = flag_tokens(name, value, flags.lookup(name) if flags else None)
        for option, values in options_passed(tokens):
            meant = flag_meant(option, flags)
            plain = bool(values) and set(values) <= PLAIN_VALUES.get(meant, set())
            if meant in FILE_FLAGS or meant in IMPORTING_VALUES:
                sensitive = True
            elif (meant in CODE_FLAGS or meant in PLAIN_VALUES) and not plain:
                sensitive = True
        if sensitive:
            left_out.append(name)
    return left_out


def _left_out_note(deployment: Deployment, left_out: list[str]) -> Diagnostic:
    shown = ", ".join(f"--{name}" for name in left_out[:5])
    more = f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
    return at(
        deployment,
        ("vllm", "args", left_out[0]),
        f"the engine check left out {shown}{more}: validate does not let vLLM import code, "
        "read files or connect where the YAML says",
        hint="vLLM judges them when the app starts (`deployer serve NAME --local` runs it here)",
        rule="engine.not-run",
        severity=Severity.NOTE,
    )


def _note(deployment: Deployment, message: str, hint: str) -> Diagnostic:
    # At vllm.version, wherever it is written: deployments that share _defaults.yaml share one note.
    return at(
        deployment,
        ("vllm", "version"),
        message,
        hint=hint,
        rule="engine.not-run",
        severity=Severity.NOTE,
        key=False,
    )


def _refusal(
    deployment: Deployment, command: engine.Command, refusal: engine.Refusal, version: str
) -> Diagnostic:
    said = trimmed(refusal.message)
    path = _place(deployment, refusal.message)
    if (
        any("vllm/platforms/" in f for f in refusal.frames)
        or "platform" in refusal.message.lower()
        or DEVICE_WORDS.search(refusal.message)
    ):
        message = f"vLLM {version}'s CPU platform refuses this, and a GPU may not: {said}"
        hint = "the engine check runs on the CPU; `deployer serve NAME --local` on a GPU tells"
    elif HUB_WORDS.search(refusal.message) or any("huggingface_hub/" in f for f in refusal.frames):
        message = f"vLLM {version} would read from the Hub here, and the engine check is offline: "
        message += said
        hint = "this is checked when the app starts"
    elif command.stands_in and MISSING_FILE.search(refusal.message):
        message = (
            f"vLLM {version} reads more of the model than its config.json here, which is all the "
            f"engine check has of a Hub model: {said}"
        )
        hint = "this is checked when the app starts"
    else:
        return at(
            deployment,
            path,
            f"vLLM {version} refuses this: {said}",
            hint=wanted(refusal.message, path[-1] if path[:2] == ("vllm", "args") else None),
            rule="engine.refused",
        )
    return at(deployment, path, message, hint=hint, rule="engine.not-run", severity=Severity.NOTE)


def _place(deployment: Deployment, message: str) -> tuple:
    """The first `vllm.args` entry the message names; else the YAML that sets a flag it names;
    else `vllm.args` (or `vllm.version` when there are none)."""
    written = [name for name, _ in deployment.vllm.args]
    if named := mentioned(message, written):
        return ("vllm", "args", named[0])
    if owned := mentioned(message, list(OWNERS)):
        return OWNERS[owned[0]]
    return ("vllm", "args") if written else ("vllm", "version")


def trimmed(message: str) -> str:
    """vLLM's message on one line: pydantic's error type and documentation links left out, each
    error's location joined to its text."""
    parts: list[str] = []
    for line in CHOICES.sub("", message).splitlines():
        text = PYDANTIC_INPUT.sub("", line).strip().removeprefix("Error: ")
        text = text.removeprefix("Value error, ")
        if not text or text.startswith("For further information visit"):
            continue
        if line[:1].isspace() and parts:
            parts[-1] += f": {text}"
        else:
            parts.append(text)
    return printable("; ".join(parts), SHOWN_MESSAGE)


def wanted(message: str, flag: str | None) -> str:
    """What vLLM wants, when its message says it in a form known here."""
    where = f"`{flag}`" if flag else "the flag"
    if match := re.search(r"--([\w-]+) requires --([\w-]+)", message):
        return f"set `{match[2]}` in vllm.args too, or remove `{match[1]}`"
    if unexpected := re.findall(r"^(\S+)\n\s+Unexpected keyword argument", message, re.M):
        keys = ", ".join(f"`{key}`" for key in dict.fromkeys(unexpected))
        return f"remove {keys} from {where}: vLLM has no such setting there"
    if match := CHOICES.search(message):
        return f"use one of: {printable(match[2].strip(), 400)}"
    if match := re.search(r"(\w+) must be provided", message):
        return f"add `{match[1]}` to {where}"
    if match := re.search(r"[Pp]lease ([^.\n]+)", message):
        return match[1]
    if match := re.search(r"Input should be ([^\[\n]+)", message):
        what = match[1].strip()
        mapping = " (a YAML mapping)" if what.endswith("dictionary") else ""
        return f"vLLM wants {where} to be {what}{mapping}"
    return DEFAULT_HINT
