"""`vllm.args` against the pinned vLLM version's real flags (its catalog), and against the flags
the deployer owns. Everything here would otherwise stop vLLM at startup, after a cold start."""

from __future__ import annotations

import functools
import itertools
import json
import math
import posixpath
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from deployer.checks._at import at
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.core.limits import MAX_JSON_NODES
from deployer.core.text import did_you_mean
from deployer.spec.model import Deployment
from deployer.vllm import catalog
from deployer.vllm.argv import MANAGED_FLAGS, flag_tokens, negated_options, vllm_server
from deployer.vllm.catalog import FLOAT_TYPES, INT_TYPES, JSON_TYPES, SIZE_TYPES, Flag
from deployer.vllm.fit import TOKEN_COUNT, parse_tokens, token_text_problem

# Flags whose value is a credential: it would be written into the rendered app and its log.
SECRET_FLAGS = {"hf-token": "HF_TOKEN", "api-key": "VLLM_API_KEY"}


def check_managed_flags(deployment: Deployment) -> Iterable[Diagnostic]:
    flags = catalog.load(deployment.vllm.version)
    for name, value in deployment.vllm.args:
        bare = name[3:] if name.startswith("no-") and name[3:] in MANAGED_FLAGS else name
        known = flags.lookup(name) if flags else None
        # vLLM's argparse accepts any unique prefix (--api-ke is --api-key): never let one stand in
        # for a flag the deployer owns, a credential flag, or one checked for what it reads or runs.
        owned = [
            full
            for full in (*MANAGED_FLAGS, *SECRET_FLAGS, *SENSITIVE_FLAGS)
            if full.startswith(name) and full != name
        ]
        if (
            known is None and owned and not catalog.versions_with(name)
        ):  # a real flag in some release is no abbreviation
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} is an abbreviation vLLM would read as --{owned[0]}"
                + (f" (or {', '.join('--' + o for o in owned[1:])})" if len(owned) > 1 else ""),
                hint="write flags in full; " + _abbreviated_hint(owned[0]),
                rule="flags.abbreviated",
            )
            continue
        if known is not None and known.name in MANAGED_FLAGS:
            bare = known.name  # an alias such as --disable-lora for --enable-lora
        if name in SECRET_FLAGS:
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} would write a credential into the rendered app and its log",
                hint=f"remove it; put {SECRET_FLAGS[name]} in a Modal Secret and list the "
                "secret under `secrets:`" + (" (or use auth.api_key)" if name == "api-key" else ""),
                rule="secrets.in-args",
            )
            continue
        tokens = flag_tokens(name, value, known)[1:]
        for item in value if isinstance(value, list) else [value]:
            # vLLM's parser takes any word that starts with '-' and holds a '.' for a dotted
            # option (--compilation-config.level), eating the word after it: -1.5 included,
            # whether written as text or as a YAML number (numbers inside JSON text are not
            # words of their own).
            word = item if isinstance(item, str) else _number_word(item)
            if (
                word is not None
                and (isinstance(item, str) or word in tokens)
                and word.startswith("-")
                and (not _is_number(word) or "." in word)
            ):
                yield at(
                    deployment,
                    ("vllm", "args", name),
                    f"a value of --{name} starts with '-' ({item!r}): vLLM would read it "
                    "as another flag",
                    hint="values cannot start with '-'; if this was meant as a flag, give it "
                    "its own key in vllm.args",
                    rule="flags.value-looks-like-flag",
                    key=False,
                )
                break
        if bare in MANAGED_FLAGS:
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{bare} is set by the deployer and cannot be given in vllm.args",
                hint=f"remove it; it is controlled by {MANAGED_FLAGS[bare]}",
                rule="flags.managed",
            )


def _abbreviated_hint(full: str) -> str:
    if full in MANAGED_FLAGS:
        return f"--{full} is controlled by {MANAGED_FLAGS[full]}"
    if full in SECRET_FLAGS:
        return f"put {SECRET_FLAGS[full]} in a Modal Secret instead"
    return (
        f"--{full} is checked for what it reads, runs or exposes, which an abbreviation "
        "would slip past"
    )


def _number_word(item: object) -> str | None:
    """How a YAML number is written on vLLM's command line; None for anything else."""
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return str(item)
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Flags that make vLLM run code, or serve files, that the deployment names: legitimate, but a
# reviewer should see them as code, not as settings (warnings; `validate --strict` fails on them).
# (vLLM runs with `python -P`: the committed folders under /root/sources are not importable, but
# anything installed in the image is.)
CODE_FLAGS = {
    "trust-remote-code": "runs Python code from the model's repository",
    "tool-parser-plugin": "imports the Python file it names",
    "reasoning-parser-plugin": "imports the Python file it names",
    "middleware": "imports the Python object it names into the server",
    "logits-processors": "imports the Python classes it names",
    "logits-processor-pattern": "lets each request import logits processors whose names match it",
    "worker-cls": "imports the class it names into every worker",
    "worker-extension-cls": "imports the class it names into every worker",
    "scheduler-cls": "imports the class it names into the engine",
    "model-class-overrides": "imports the model classes it names",
    "distributed-executor-backend": "imports the executor class it names into the engine (ray: starts or joins a "
    "Ray cluster and opens its ports)",
    "io-processor-plugin": "loads the plugin it names",
    "log-config-file": "hands a file to logging.config, which can build any Python object",
    "logging-config": "hands a file (pylogging_config_file) to logging.config, which can build any "
    "Python object",
    "code-revision": "picks the revision of the model repository's Python code that "
    "trust-remote-code runs",
    "allowed-local-media-path": "lets every request read files under that folder of the container (its Secrets "
    "are in /proc/self/environ)",
}
# Values of the flags above and below that are built-in names, not imports, connections or logs.
PLAIN_VALUES = {
    "distributed-executor-backend": {"mp", "uni", "external_launcher"},
    "data-parallel-backend": {"mp"},
    "kv-offloading-backend": {"native"},
    "load-format": {
        "auto",
        "pt",
        "safetensors",
        "npcache",
        "dummy",
        "hf",
        "fastsafetensors",
        "instanttensor",
        "mistral",
        "gguf",
        "bitsandbytes",
        "sharded_state",
    },
    "log-level": {"CRITICAL", "ERROR", "WARNING", "INFO"},
}
IMPORTING_VALUES = ("spec-model",)  # a Hub repo, or with a dotted name a class to import
JSON_KEYS_AS_FLAGS = {
    "load_format": "load-format"
}  # keys inside JSON flags judged as these flags are (a draft model's load_format)


# Flags whose value may name a file in the container that vLLM reads and, for some, shows to
# callers (a chat template read from /proc/self/environ comes back from /tokenize, /detokenize and
# /tokenizer_info, Secrets included).
FILE_FLAGS = (
    "chat-template",
    "tokenizer",
    "hf-config-path",
    "generation-config",
    "ssl-keyfile",
    "ssl-certfile",
    "ssl-ca-certs",
    "mm-encoder-fp8-scale-path",
    "mm-encoder-fp8-scale-save-path",
)
SYSTEM_FOLDERS = (
    "/proc",
    "/sys",
    "/dev",
    "/etc",
    "/run",
    "/var/run",
    "/root/.",
)  # /root/.: its dot-folders (.ssh, .modal.toml)
CONTAINER_CWD = "/root"  # where vLLM runs in the container: relative paths start there
OURS_UNDER_ROOT = ("/root/sources", "/root/.cache/huggingface")  # what the app mounts there
HUB_OR_KEYWORD = re.compile(
    r"^(?:[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*|auto|vllm)$"
)
INLINE = re.compile(r"[{}\n]")  # what vLLM takes for template text once opening it as a file fails
EXPOSING_FLAGS = {
    "enable-tokenizer-info-endpoint": "serves the chat template and tokenizer configuration to every caller",
    "otlp-traces-endpoint": "sends traces of every request to that address",
    "tool-server": "sends requests to the tool servers it names",
    "master-addr": "connects the engine to that host",
    "data-parallel-address": "connects the engine to that host",
    "profiler-config": "opens /start_profile and /stop_profile to every caller and writes traces into "
    "the container",
    "enable-fault-tolerance": "opens the /fault_tolerance routes to every caller",
    "trust-request-chat-template": "lets every request bring its own chat template",
    "enable-log-requests": "writes every request's prompt into the logs",
    "enable-log-outputs": "writes every reply into the logs",
    "allow-credentials": "lets browsers send credentials from the allowed origins",
    "log-level": "below INFO, writes prompts and replies into the logs",
    "load-format": "loads the weights from elsewhere than the model folder (object storage, a "
    "tensorizer URI, a weight server or a local daemon)",
    "kv-offloading-backend": "sends the KV cache, the requests' contents, to an LMCache server",
    "kv-transfer-config": "connects the engine to the KV cache store or peer it names",
    "ec-transfer-config": "connects the engine to the encoder cache store or peer it names",
    "kv-events-config": "publishes every request's token ids on the socket it names (on all interfaces "
    "by default)",
    "weight-transfer-config": "lets a trainer elsewhere replace the model's weights",
    "data-parallel-backend": "starts or joins a Ray cluster and opens its ports",
    "data-parallel-multi-port-external-lb": "starts an API server per rank on more ports, and a health server on all "
    "interfaces",
    "data-parallel-rpc-port": "opens a port for data-parallel coordination",
    "data-parallel-supervisor-port": "opens a health server port on all interfaces",
    "master-port": "spreads the engine over nodes that connect to each other",
    "nnodes": "spreads the engine over nodes that connect to each other",
    "node-rank": "spreads the engine over nodes that connect to each other",
    "enable-elastic-ep": "opens /scale_elastic_ep, which rescales the engine, to every caller",
    "enable-prompt-embeds": "lets every request send tensors the server deserializes (torch.load)",
    "enable-mm-embeds": "lets every request send tensors the server deserializes (torch.load)",
    "enable-scale-out": "adds render routes and /inference/v1/generate",
    "tokens-only": "adds /abort_requests, which vLLM's own key check leaves open",
    "trust-request-mm-kwargs": "lets every request pass its own multimodal processor arguments",
}
SENSITIVE_FLAGS = (*CODE_FLAGS, *FILE_FLAGS, *EXPOSING_FLAGS)
# Inside JSON-valued flags (kv-transfer-config, compilation-config, speculative-config, ...): keys
# that name Python code vLLM imports, and any value written like an import path (a compilation
# `backend`, a speculative `model`, a connector's `policy`: vLLM imports dotted names in many
# places), or like an address it would connect to (kv-events-config's `endpoint`).
# (compilation-config's cache_dir: vLLM loads compiled artifacts, pickles included, from there;
# its inductor_compile_config goes to torch as raw settings, some of which reach the C++
# compiler's command line: `cpp.march: "native -include /root/sources/x.h"` compiles a committed
# header into a library the server loads.)
CODE_KEYS = re.compile(
    r"(module_path|_cls|^cls|class_name|inductor_passes|inductor_compile_config|"
    r"plugin|logging_config_file|trust_remote_code|auto_map|^cache_dir)$"
)
IMPORT_PATH = re.compile(
    r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\.[A-Za-z_]\w*|:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)$"
)
OWN_CODE = "vllm."


def container_path(value: object) -> str | None:
    """Where a file-flag value leads in the container, or None when it is no path (a Hub repo id,
    a keyword). Template text is a path too: vLLM tries to open every value first."""
    if not isinstance(value, str) or HUB_OR_KEYWORD.match(value):
        return None
    joined = posixpath.join(
        CONTAINER_CWD, "/root" + value[1:] if value.startswith("~") else value
    )  # the container's home
    return "/" + posixpath.normpath(joined).lstrip("/")  # normpath keeps a leading //


def is_system_path(path: str) -> bool:
    def inside(folder: str) -> bool:
        return path == folder or path.startswith(folder if folder.endswith(".") else folder + "/")

    return any(inside(f) for f in SYSTEM_FOLDERS) and not any(inside(f) for f in OURS_UNDER_ROOT)


def _json_text(text: str) -> object | None:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def json_items(value: object) -> list[tuple[object, object]]:
    """The first MAX_JSON_NODES of `walk_json(value)`: a flag's value holding more is an error (in
    `check_code_flags`). JSON text is parsed first (text that does not parse is an error, in
    `_value_problem`)."""
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        value = _json_text(value)
        if value is None:
            return []
    return list(itertools.islice(walk_json(value), MAX_JSON_NODES))


def walk_json(value: object) -> Iterator[tuple[object, object]]:
    """Every (key, value) pair inside a JSON value (list items under their list's key). A loop
    over iterators, not recursion (a JSON text a few hundred levels deep would exhaust Python's
    recursion limit), nor lists of pairs (a 10 MB file of numbers would be millions of tuples
    at once)."""
    stack: list[Iterator[tuple[object, object]]] = [iter(((None, value),))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        key, item = entry
        if isinstance(item, dict):
            yield from item.items()
            stack.append(iter(item.items()))
        elif isinstance(item, list):
            yield from ((key, x) for x in item if not isinstance(x, (dict, list)))
            stack.append((key, x) for x in item)


def code_named_in(name: str, value: object, items: list[tuple[object, object]]) -> list[str]:
    """`items`: the value's `json_items`, walked once for all the readers here."""
    if name in IMPORTING_VALUES and isinstance(value, str):
        return [value] if IMPORT_PATH.match(value) and not value.startswith(OWN_CODE) else []
    keys = [str(k) for k, _ in items if isinstance(k, str) and CODE_KEYS.search(k)]
    paths = [
        f"{k}: {v}"
        for k, v in items
        if isinstance(v, str) and IMPORT_PATH.match(v) and not v.startswith(OWN_CODE)
    ]
    return list(dict.fromkeys(keys + paths))


ADDRESS_KEY = re.compile(r"(_ip|_host|_addr|address|endpoint|_uri|_url|proxies)$")
PATH_VALUE = re.compile(r"^(/|~|\.\.?/)")
PATH_KEY = re.compile(
    r"(^|_)(dir|path|file|folder)$"
)  # whose values are paths, relative ones (from /root) too


def addresses_in(items: list[tuple[object, object]]) -> list[str]:
    return [
        v
        for k, v in items
        if isinstance(v, str)
        and v
        and ("://" in v or (isinstance(k, str) and ADDRESS_KEY.search(k)))
    ]


def paths_in(items: list[tuple[object, object]]) -> list[str]:
    """Values inside a JSON flag written like a path in the container (default-mm-loras' folders),
    or under a key naming a path (a profiler's trace folder): judged as file flags' values are.
    The latter as relative paths even when shaped like a Hub repo id (`sources/dump`)."""
    found = []
    for k, v in items:
        if not isinstance(v, str) or not v:
            continue
        if PATH_VALUE.match(v):
            found.append(v)
        elif isinstance(k, str) and PATH_KEY.search(k) and not CODE_KEYS.search(k):
            found.append(v if v.startswith("~") else "./" + v)
    return found


def options_passed(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """The command-line tokens of one entry as (option without dashes, its values)."""
    groups: list[tuple[str, list[str]]] = []
    for token in tokens:
        if token.startswith("--"):
            groups.append((token[2:], []))
        elif groups:
            groups[-1][1].append(token)
    return groups


def flag_meant(option: str, flags: catalog.Catalog | None) -> str | None:
    """The flag an option sets, by its own name, or None when the option turns it off
    (`--no-x`, or `--disable-x` of an `--enable-x` flag)."""
    known = flags.lookup(option) if flags else None
    name = known.name if known else option
    return None if option != name and option.startswith(("no-", "disable-")) else name


REVIEWED_FILE = Path(__file__).parents[1] / "data" / "vllm_flags_reviewed.json"


@functools.cache
def reviewed_flags() -> tuple[frozenset[str], tuple[str, ...]]:
    """(flags reviewed as plain tuning, the catalog versions the review covered)."""
    data = json.loads(REVIEWED_FILE.read_text(encoding="utf-8"))
    return frozenset(data["flags"]), tuple(data["catalogs"])


def _reviewed(flag: str) -> bool:
    """Known to tune only, or known for what it does (and judged above), or the deployer's own."""
    return (
        flag in reviewed_flags()[0]
        or flag in SENSITIVE_FLAGS
        or flag in MANAGED_FLAGS
        or flag in SECRET_FLAGS
        or flag in IMPORTING_VALUES
    )


def check_code_flags(deployment: Deployment) -> Iterable[Diagnostic]:
    """Judged on what vLLM will be given (the rendered tokens), so that an alias, a list or the
    spelling of a false value cannot pass for something harmless."""
    flags = catalog.load(deployment.vllm.version)
    local = [d.source for d in deployment.declared_sources if d.source.is_local]
    if local and "-P" not in vllm_server(deployment.image.python):
        yield at(
            deployment,
            ("image", "python"),
            f"image.python {deployment.image.python} has no `python -P`: vLLM's working "
            "folder, where the local folders are copied, stays importable, so a flag "
            f"naming a class could import a file from {local[0].written_path}",
            hint="use Python 3.11 or later",
            rule="flags.importable-sources",
            severity=Severity.WARNING,
            key=False,
        )
    for name, value in deployment.vllm.args:
        items = json_items(value)
        if len(items) >= MAX_JSON_NODES:
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} holds more than {MAX_JSON_NODES:,} values, more than the "
                "deployer judges for code, addresses and paths",
                hint="give vLLM a smaller configuration",
                rule="flags.value",
                key=False,
            )
            continue
        if name not in CODE_FLAGS and (
            named := code_named_in(name, value, items)
        ):  # (those are warned about below)
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} names code vLLM would import or run ({', '.join(named[:5])})",
                hint="review it as code: it runs in the container with the deployment's Secrets",
                rule="flags.runs-code",
                severity=Severity.WARNING,
                key=False,
            )
        yield from _file_findings(deployment, name, paths_in(items))
        for key, flag in JSON_KEYS_AS_FLAGS.items():
            if any(
                k == key and isinstance(v, str) and v not in PLAIN_VALUES[flag] for k, v in items
            ):
                yield at(
                    deployment,
                    ("vllm", "args", name),
                    f"--{name} {key}: {EXPOSING_FLAGS[flag]}",
                    hint="review it: remove it unless callers need it",
                    rule="flags.exposes",
                    severity=Severity.WARNING,
                    key=False,
                )
        if addresses := addresses_in(items):
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} names an address vLLM connects to ({', '.join(addresses[:3])})",
                hint="review it: requests or their data would go there",
                rule="flags.exposes",
                severity=Severity.WARNING,
                key=False,
            )
        for option, values in options_passed(
            flag_tokens(name, value, flags.lookup(name) if flags else None)
        ):
            meant = flag_meant(option, flags)
            if meant in FILE_FLAGS:
                yield from _file_findings(deployment, name, values)
            plain = bool(values) and set(values) <= PLAIN_VALUES.get(meant, set())
            if meant in EXPOSING_FLAGS and not plain:
                yield at(
                    deployment,
                    ("vllm", "args", name),
                    f"--{meant} {EXPOSING_FLAGS[meant]}",
                    hint="review it: remove it unless callers need it",
                    rule="flags.exposes",
                    severity=Severity.WARNING,
                )
            if (
                meant is not None
                and flags is not None
                and flags.lookup(meant) is not None
                and not _reviewed(meant)
            ):
                yield at(
                    deployment,
                    ("vllm", "args", name),
                    f"--{meant} is not among the flags reviewed for what they make vLLM "
                    "read, import, open or send (reviewed for vLLM "
                    f"{', '.join(reviewed_flags()[1])})",
                    hint="read what it does in vLLM's source before merging, as you would "
                    "code; if it only tunes the engine, add it to "
                    "deployer/data/vllm_flags_reviewed.json",
                    rule="flags.unreviewed",
                    severity=Severity.WARNING,
                )
            if meant in CODE_FLAGS and not plain:
                yield at(
                    deployment,
                    ("vllm", "args", name),
                    f"--{meant} {CODE_FLAGS[meant]}",
                    hint="review it as code: it runs in the container with the deployment's "
                    "Secrets; remove it unless the model needs it",
                    rule="flags.runs-code",
                    severity=Severity.WARNING,
                )


def _file_findings(deployment: Deployment, name: str, values: list[str]) -> Iterable[Diagnostic]:
    for value in values:
        where = container_path(value)
        if where is None:
            continue
        if is_system_path(where):
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} {value!r} reads {where} in the container, a system file: the "
                "container's Secrets are in /proc/self/environ",
                hint=f"point --{name} at a file of the model (under the folder you deploy) or a "
                "Hub repo",
                rule="flags.reads-system-file",
                key=False,
            )
            return
        if not INLINE.search(value):
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} reads the file {where} in the container",
                hint="review it: vLLM may show what it reads to callers (a chat template comes "
                "back from /tokenize)",
                rule="flags.reads-file",
                severity=Severity.WARNING,
                key=False,
            )
            return


def check_flags_against_catalog(deployment: Deployment) -> Iterable[Diagnostic]:
    version = deployment.vllm.version
    flags = catalog.load(version)
    args = [
        (n, v)
        for n, v in deployment.vllm.args
        if n not in MANAGED_FLAGS
        and n.removeprefix("no-") not in MANAGED_FLAGS
        and n not in SECRET_FLAGS
    ]
    if flags is None:
        unchecked = ", ".join(f"--{n}" for n, _ in args) or "none given"
        yield at(
            deployment,
            ("vllm", "version"),
            f"no flag catalog for vLLM {version}: vllm.args were not checked against its "
            f"flags ({unchecked}), and LoRA limits assume the rank choices of vLLM "
            "0.11-0.32",
            hint=f"catalogued versions: {', '.join(catalog.available_versions())}; add one with "
            f"scripts/extract_vllm_flags.py --install {version}",
            rule="flags.no-catalog",
            severity=Severity.WARNING,
            key=False,
        )
        for name, value in args:
            yield from _changed_by_yaml(deployment, name, value, None)
        return
    for name, value in args:
        flag = flags.lookup(name)
        if flag is None:
            yield _unknown(deployment, name, flags)
            continue
        if flag.name in MANAGED_FLAGS:
            continue  # an alias of a flag the deployer owns: reported by check_managed_flags
        if flag.kind == "boolean_optional" and value is False and not negated_options(name, flag):
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} has no negative form in vLLM {version}",
                hint="remove it to keep vLLM's default",
                rule="flags.value",
                key=False,
            )
            continue
        if flag.kind == "boolean_optional" and name == f"no-{flag.name}":
            yield at(
                deployment,
                ("vllm", "args", name),
                f"write the flag as `{flag.name}: "
                f"{str(not value).lower() if isinstance(value, bool) else 'false'}` rather "
                f"than `{name}`",
                hint=f"true gives --{flag.name}, false gives --no-{flag.name}",
                rule="flags.negated-name",
            )
            continue
        problem = _value_problem(flag, value)
        if problem:
            message, hint = problem
            yield at(
                deployment,
                ("vllm", "args", name),
                f"--{name} {message} (vLLM {version})",
                hint=hint,
                rule="flags.value",
                key=False,
            )
        else:  # a value vLLM takes, but perhaps not the one written
            yield from _changed_by_yaml(deployment, name, value, flag)


# Unquoted words that YAML 1.1 (PyYAML, which reads the deployments) turns into numbers, with
# what it takes them for: YAML 1.2 and most readers of the same file would keep them as written.
YAML11_NUMBERS = (
    (re.compile(r"[-+]?0b[01_]+"), "a binary number"),
    (re.compile(r"[-+]?0x[0-9a-fA-F_]+"), "a hexadecimal number"),
    (re.compile(r"[-+]?0[0-7_]+"), "an octal number"),
    (re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"), "a base-60 number"),
    (re.compile(r"[-+]?\.(?:inf|Inf|INF)"), "infinity"),
    (re.compile(r"\.(?:nan|NaN|NAN)"), "not a number"),
)


def _changed_by_yaml(
    deployment: Deployment, name: str, value: Any, flag: Flag | None
) -> Iterator[Diagnostic]:
    """Each unquoted scalar of a `vllm.args` entry that YAML 1.1 built into something other than
    what was written (`0123` → 83, `1:30` → 90, `on` → true), when vLLM would be given the
    built value. A number is as written when it is the number the text says (`0.90` for a float
    flag, and anything inside a mapping, which goes as JSON); for a flag that takes text (or a
    flag the pinned version does not have), only when the text is unchanged. A boolean is as
    written for a boolean flag, or spelled true or false."""
    numeric = flag is None or flag.base_type in INT_TYPES | FLOAT_TYPES | SIZE_TYPES
    boolean = flag is None or flag.is_boolean
    values = deployment.document.values
    pending: list[tuple[tuple, Any, bool]] = [(("vllm", "args", name), value, False)]
    for _ in range(MAX_JSON_NODES):  # a larger value is refused in check_code_flags
        if not pending:
            return
        path, item, in_json = pending.pop()
        if isinstance(item, dict):
            pending.extend((path + (k,), v, True) for k, v in reversed(item.items()))
            continue
        if isinstance(item, list):
            pending.extend((path + (i,), v, in_json) for i, v in reversed(list(enumerate(item))))
            continue
        span = values.get(path)
        raw = span.raw if span else None
        if raw is None or isinstance(item, str) or item is None:
            continue  # quoted, or text kept as written; null goes as JSON null
        if isinstance(item, bool):
            if raw.lower() in ("true", "false") or (boolean and not in_json):
                continue
            reading, given = "a YAML 1.1 boolean", str(item).lower()
            hint = f'quote it to pass it as written ("{raw}"), or write {given}'
        else:
            if _same_number(raw, item) if numeric or in_json else str(item) == raw:
                continue
            reading = next((r for pattern, r in YAML11_NUMBERS if pattern.fullmatch(raw)), "")
            if not reading and "_" in raw:
                reading = "YAML 1.1 drops the underscores"
            given = str(item)
            hint = f'quote it to pass it as written ("{raw}")' + (
                ", or write the number you mean" if numeric or in_json else ""
            )
        inside = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[3:])
        where = f"--{name}" + (f" at {inside.lstrip('.')}" if inside else "")
        yield at(
            deployment,
            path,
            f"YAML reads the unquoted {raw} in {where} as {given}"
            + (f" ({reading})" if reading else "")
            + ", which vLLM would be given instead",
            hint=hint,
            rule="flags.changed-by-yaml",
            key=False,
        )


def _same_number(raw: str, number: int | float) -> bool:
    """Whether `raw` read as Python (and vLLM) reads a number is `number`."""
    try:
        return (int(raw) if isinstance(number, int) else float(raw)) == number
    except ValueError:
        return False


def _unknown(deployment: Deployment, name: str, flags: catalog.Catalog) -> Diagnostic:
    path = ("vllm", "args", name)
    elsewhere = [v for v in catalog.versions_with(name) if v != flags.version]
    if elsewhere:
        return at(
            deployment,
            path,
            f"--{name} does not exist in vLLM {flags.version} (the pinned version); it "
            f"exists in {', '.join(elsewhere)}",
            hint="remove it, or pin a version that has it; "
            f"{_suggest(name, flags) or 'see `vllm serve --help` for this version'}",
            rule="flags.not-in-version",
        )
    return at(
        deployment,
        path,
        f"--{name} is not a flag of vLLM {flags.version}",
        hint=_suggest(name, flags) or "see `vllm serve --help` for the pinned version",
        rule="flags.unknown",
    )


def _suggest(name: str, flags: catalog.Catalog) -> str:
    """`did you mean ...?` for an unknown flag name: its dashed form first, since vLLM's Python
    names (enable_prefix_caching) are what a config or a notebook shows."""
    dashed = name.replace("_", "-").lower()
    if dashed != name and (known := flags.lookup(dashed)) is not None:
        return f"did you mean {known.name!r}? vLLM's flag names are written with dashes"
    return did_you_mean(name, flags.names)


def _value_problem(flag: Flag, value: Any) -> tuple[str, str] | None:
    """(what is wrong, how to fix it), or None."""
    if flag.is_boolean:
        if not isinstance(value, bool):
            return (
                f"takes true or false, not {value!r}",
                f"write `{flag.name}: true` to give --{flag.name}",
            )
        return None
    if isinstance(value, bool):
        return (
            f"takes a value, not {str(value).lower()}",
            "YAML reads unquoted yes/no/true/false as booleans; quote the value if it is text",
        )
    if (
        flag.base_type in JSON_TYPES
        and isinstance(value, str)
        and value.lstrip().startswith(("{", "["))
        and _json_text(value) is None
    ):
        # vLLM reads more than JSON here (0.32 expands 1k-style numbers first): what json.loads
        # cannot read, the checks for code, addresses and paths inside could not judge.
        return (
            "takes JSON text that the deployer can read, and this is not JSON",
            "write it as a YAML mapping (the deployer writes the JSON), or as plain JSON "
            "without 1k-style numbers",
        )
    if isinstance(value, dict):
        if flag.base_type in JSON_TYPES:
            return None
        return (
            "does not take a mapping",
            "give a single "
            f"value{' or a list' if flag.takes_list or flag.kind == 'append' else ''}",
        )
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value and flag.base_type not in JSON_TYPES:
        return (
            "takes at least one value, not an empty list",
            "remove the flag to keep vLLM's default",
        )
    if isinstance(value, list) and not (
        flag.takes_list or flag.kind == "append" or flag.base_type in JSON_TYPES
    ):
        return "takes one value, not a list", "give a single value"
    for item in items:
        if isinstance(item, (dict, list)) and flag.base_type not in JSON_TYPES:
            return "takes plain values, not nested lists or mappings", ""
        problem = _item_problem(flag, item)
        if problem:
            return problem
    return None


def _item_problem(flag: Flag, item: Any) -> tuple[str, str] | None:
    if flag.base_type in INT_TYPES and not (isinstance(item, int) and not isinstance(item, bool)):
        return f"takes a whole number, not {item!r}", ""
    if flag.base_type in SIZE_TYPES and not (
        isinstance(item, int)
        or (isinstance(item, str) and (TOKEN_COUNT.fullmatch(item) or item == "auto"))
    ):
        return f'takes a number of tokens such as 4096 or "4k", not {item!r}', ""
    if (
        flag.base_type in SIZE_TYPES
        and isinstance(item, str)
        and item != "auto"
        and (problem := token_text_problem(item))
    ):
        return (
            f"takes a number of tokens vLLM can read ({problem}), not {item!r}",
            "write a whole number such as 40960, or 40k (×1000) or 40K (×1024)",
        )
    if flag.base_type in FLOAT_TYPES and (
        isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item)
    ):
        return f"takes a number, not {item!r}", ""
    number = parse_tokens(item) if isinstance(item, str) and flag.base_type in SIZE_TYPES else item
    if (
        flag.bounds
        and isinstance(number, (int, float))
        and not isinstance(number, bool)
        and flag.out_of_bounds(number)
    ):
        return (
            f"must be {flag.bounds_text()}, not {item!r}",
            f"vLLM's {flag.bounds_source} refuses other values when it starts",
        )
    if flag.choices is not None and not any(item == c or str(item) == str(c) for c in flag.choices):
        choices = ", ".join(map(str, flag.choices))
        numeric = [
            c for c in flag.choices if isinstance(c, (int, float)) and not isinstance(c, bool)
        ]
        above = [c for c in numeric if isinstance(item, (int, float)) and c >= item]
        if above:
            hint = f"use {min(above)}, the smallest allowed value above it (allowed: {choices})"
        else:
            hint = did_you_mean(str(item), map(str, flag.choices)) or f"allowed: {choices}"
        return f"does not accept {item!r}", hint
    return None
