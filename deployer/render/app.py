"""Deployment → one Modal app file, from the Jinja2 template in `templates/`, and beside it the
runtime files it imports (the same for every app, copied from `templates/`).

Decisions are made here and in `argv`; the template only lays them out. Every value enters the
code through `literal()`, which writes a Python literal (never raw text), so no YAML value can
become code. Output is deterministic, and its header carries a hash of everything below it.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import os
import re
import signal
import tempfile
import threading
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer.core.limits import (
    MAX_APP_CHARS,
    MAX_EXPONENT,
    MAX_REPEAT,
    RENDER_MEMORY,
    RENDER_SECONDS,
)
from deployer.core.paths import linked_part, read_plain, real, within
from deployer.spec.model import Deployment
from deployer.vllm.argv import (
    AUTH_DIGEST_VARIABLE,
    AUTH_GUARD_MODULE,
    CREDENTIAL_NAME,
    VLLM_PORT,
    WEIGHT_FILE_KINDS,
    unfetched_files,
    vllm_flags,
    vllm_server,
    weight_files,
)

TEMPLATE_NAME = "modal_app.py.j2"
AUTH_GUARD_FILE = "vllm_auth_guard.py"  # always ours, also under a project's own template
HASH_MARKER = "# deployer-content-hash: "
APP_FILE = "app.py"
# What the app imports in its container besides `modal` (its downloads, vLLM's environment), and
# the API key middleware vLLM imports: written beside every app, unchanged, and added to its image.
# Always ours, also under a project's own template. Name beside the app → file in templates/.
RUNTIME_MODULE = "deployer_runtime"
RUNTIME_FILES = {
    f"{RUNTIME_MODULE}.py": "deployer_runtime.py",
    f"{AUTH_GUARD_MODULE}.py": AUTH_GUARD_FILE,
}
CONTAINER_APP_FOLDER = "/root"  # where Modal puts the app file, and so where it imports from
# What `serve --local` keeps beside the app: the running server, and vLLM's log.
STATE_FILE = "local-server.json"
LOG_FILE = "vllm.log"
HF_CACHE = "/root/.cache/huggingface"
VLLM_CACHE = "/root/.cache/vllm"
CONTAINER_SOURCES = "/root/sources"  # local `path:` folders are copied under here
LINE_WIDTH = 100


@dataclass(frozen=True)
class RenderedApp:
    name: str
    source: str
    content_hash: str  # of the whole file, written in its header
    path: Path  # where it belongs: <out>/<name>/app.py
    hashed_source: str | None = field(
        default=None, repr=False
    )  # what code_hash reads, if not `source`
    # (name, text) of each file written beside the app: RUNTIME_FILES
    runtime_files: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @functools.cached_property
    def code_hash(self) -> str:
        """Of its code without comments, and of the runtime files beside it, the same wherever it
        is rendered (for deploy hashes). Computed on demand: only plan and apply need it."""
        digest = hashlib.sha256(
            code_hash(
                self.hashed_source if self.hashed_source is not None else self.source
            ).encode()
        )
        for name, text in self.runtime_files:
            digest.update(f"\0{name}\0{code_hash(text)}".encode())
        return digest.hexdigest()

    def files(self) -> list[tuple[Path, str]]:
        """Every file render writes for this app: the runtime files, then the app itself."""
        folder = self.path.parent
        return [(folder / name, text) for name, text in self.runtime_files] + [
            (self.path, self.source)
        ]


class TemplateProblem(Exception):
    """The template cannot be rendered (a project's own templates/ may be broken); says where."""


class OutputProblem(Exception):
    """The output folder cannot take the rendered app; the message says why."""


def templates_dir() -> Path:
    """`templates/` beside the package in a checkout; `deployer/templates` in an installed wheel."""
    for candidate in (
        Path(__file__).parents[1] / "templates",
        Path(__file__).parents[2] / "templates",
    ):
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE_NAME} not found beside the deployer package")


def project_templates(deployments: Path) -> Path | None:
    """A project's own templates/ beside its deployments/ folder, which overrides the packaged one
    (so a template change is a reviewed change of the repository, and `plan` sees it)."""
    folder = Path(os.path.abspath(deployments))
    candidate = (folder if folder.is_dir() else folder.parent).parent / "templates"
    return candidate if (candidate / TEMPLATE_NAME).is_file() else None


# A project's own template is code from the repository, run in CI: templates render sandboxed (no
# reaching into Python internals; ranges, repetitions and powers bounded; ~5% slower than plain
# Jinja) and within a time budget.


@functools.cache
def _environment(folder: Path):
    import jinja2  # imported here: only rendering needs it
    from jinja2.sandbox import SandboxedEnvironment, SecurityError

    class BoundedSandbox(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"the sandbox refuses an exponent over {MAX_EXPONENT}")
            if (
                operator == "*"
                and any(isinstance(x, (str, list, tuple)) for x in (left, right))
                and any(isinstance(x, int) and x > MAX_REPEAT for x in (left, right))
            ):
                raise SecurityError(
                    f"the sandbox refuses repeating a value more than {MAX_REPEAT:,} times"
                )
            return super().call_binop(context, operator, left, right)

    class PlainFiles(jinja2.FileSystemLoader):
        """Templates only as plain files inside the folder: Jinja follows links, and a committed
        templates/env -> /proc/self/environ (or ../.git/config) would be included in the app."""

        def get_source(self, environment, template):
            for searchpath in self.searchpath:
                path = os.path.join(searchpath, *jinja2.loaders.split_template_path(template))
                if (
                    os.path.islink(searchpath)
                    or os.path.islink(path)
                    or (os.path.lexists(path) and not within(path, searchpath))
                ):
                    raise SecurityError(
                        f"{path} is a link, or lies in a linked folder; templates are read "
                        f"only as plain files in {searchpath}"
                    )
            return super().get_source(environment, template)

    env = BoundedSandbox(
        loader=PlainFiles(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=True,  # a template edited while we run (a long-lived process, tests) is re-read
    )
    env.filters["py"] = literal
    env.filters["duration"] = duration
    env.filters["argv"] = argv_literal
    return env


def _template(folder: Path | None = None):
    import jinja2

    folder = folder or templates_dir()
    try:
        return _environment(folder).get_template(TEMPLATE_NAME)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateProblem(
            f"{folder / TEMPLATE_NAME}:{exc.lineno}: error: template syntax: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateProblem(f"{folder / TEMPLATE_NAME}: error: {exc}") from None
    except UnicodeDecodeError:
        raise TemplateProblem(
            f"{folder / TEMPLATE_NAME}: error: a template is not UTF-8 text"
        ) from None
    except (RecursionError, MemoryError):
        raise TemplateProblem(
            f"{folder / TEMPLATE_NAME}: error: the template nests too deeply to compile"
        ) from None


def _fill(template, values: dict, folder: Path | None) -> str:
    import jinja2

    try:
        with _time_budget(RENDER_SECONDS), _memory_budget(RENDER_MEMORY):
            # A copy: the sandbox lets a template append to a list it is given, and module-level
            # lists (argv.WEIGHT_FILE_KINDS) would keep what one render added for the next.
            body = template.render(**copy.deepcopy(values))
    except (
        Exception
    ) as exc:  # a project's template can raise anything: ZeroDivisionError, TypeError...
        import traceback

        # Jinja rewrites the traceback so that template lines appear as frames of the template file.
        line = next(
            (
                frame.lineno
                for frame in traceback.extract_tb(exc.__traceback__)
                if frame.filename.endswith(TEMPLATE_NAME)
            ),
            "?",
        )
        raise TemplateProblem(
            f"{(folder or templates_dir()) / TEMPLATE_NAME}:{line}: error: "
            f"{type(exc).__name__ + ': ' if not isinstance(exc, (jinja2.TemplateError, RenderTimeout)) else ''}{exc}"
        ) from None
    if len(body) > MAX_APP_CHARS:
        raise TemplateProblem(
            f"{(folder or templates_dir()) / TEMPLATE_NAME}: error: it rendered "
            f"{len(body):,} characters; an app is a few kilobytes (at most "
            f"{MAX_APP_CHARS:,})"
        )
    return body


class RenderTimeout(Exception):
    def __str__(self) -> str:
        return f"rendering took longer than {RENDER_SECONDS} s; does a loop never end?"


@contextlib.contextmanager
def _memory_budget(extra: int):
    """Let the block grow the process by at most `extra` bytes of address space: a template's
    `("x" * 100000).replace("x", "y" * 30000)` asks for 3 GB, and gets a MemoryError instead.
    Linux only (macOS does not enforce RLIMIT_AS); elsewhere the block runs unbounded."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        in_use = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = in_use + extra if hard == resource.RLIM_INFINITY else min(in_use + extra, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def _time_budget(seconds: float):
    """Raise RenderTimeout in the block after `seconds`. Uses SIGALRM, so only on the main thread
    (where every command renders); elsewhere the block runs unbounded."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum, frame):
        raise RenderTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def literal(value: Any, indent: int = 0) -> str:
    """`value` as Python source that evaluates to it: one line when it fits, else one item a line."""
    flat = _flat(value)
    if len(flat) + indent <= LINE_WIDTH or not isinstance(value, (list, tuple, dict)) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{literal(k)}: {literal(v, indent + 4)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
    items = [f"{pad}{literal(v, indent + 4)}," for v in value]
    return open_ + "\n" + "\n".join(items) + "\n" + " " * indent + close


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_flat(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        text = repr(value)
        # Double quotes, as hand-written Python (and black) would have them, when that needs no escape.
        return f'"{text[1:-1]}"' if text[0] == "'" and '"' not in value else text
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return (
            repr(value)
            if value == value and value not in (float("inf"), float("-inf"))
            else f"float({str(value)!r})"
        )
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def argv_literal(args: list, indent: int = 0) -> str:
    """Command-line arguments as a Python list, laid out as a command line when it does not fit
    on one line: a line for each flag, with the values that follow it."""
    flat = literal(args, indent)
    if "\n" not in flat:
        return flat
    lines: list[list[Any]] = []
    for arg in args:
        if not lines or (isinstance(arg, str) and arg.startswith("--")):
            lines.append([arg])
        else:
            lines[-1].append(arg)
    pad = " " * (indent + 4)
    items = "".join(f"{pad}{', '.join(_flat(a) for a in line)},\n" for line in lines)
    return "[\n" + items + " " * indent + "]"


def duration(seconds: Any) -> str:
    """A number of seconds as Python source: `5 * MINUTES` for whole minutes (the app defines
    `MINUTES = 60`), else its literal."""
    if type(seconds) is int and seconds > 0 and seconds % 60 == 0:
        return f"{literal(seconds // 60)} * MINUTES"
    return literal(seconds)


_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)  # bidi overrides reorder a line; surrogates: undecodable file names


# Python reads `coding: NAME` (or `coding=NAME`) in a comment on line 1 or 2 as the file's source
# encoding (PEP 263); `coding:unicode_escape` in a path would turn escaped quotes in the literals
# below back into real ones.
_CODING_COOKIE = re.compile(r"coding([:=])")


def _comment(text: str) -> str:
    """Text safe inside a `#` comment: a newline in a file name must not start a line of code,
    and no text can declare the file's encoding."""
    return _CODING_COOKIE.sub(r"coding \1", _UNPRINTABLE.sub("?", text))


def _duration(seconds: int) -> str:
    """A comment for a number of seconds, e.g. `5 minutes` (older templates write it out)."""
    if seconds % 3600 == 0:
        n, unit = seconds // 3600, "hour"
    elif seconds % 60 == 0:
        n, unit = seconds // 60, "minute"
    else:
        return ""
    return f"{n} {unit}{'s' * (n != 1)}"


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()


def context(deployment: Deployment, app_dir: Path) -> dict[str, Any]:
    """Everything the template lays out, decided here."""
    local_folders: dict[str, str] = {}  # container path → local path relative to the app file

    def container_path(kind: str, name: str, source) -> str:
        remote = f"{CONTAINER_SOURCES}/{kind}/{name}"
        local_folders[remote] = _relative(source.path, app_dir)
        return remote

    base = deployment.base_model
    if base.source.is_local:
        base_model = container_path("models", "base", base.source)
    else:
        base_model = base.source.repo

    adapters: dict[str, dict[str, Any]] = {}
    for adapter in deployment.adapters:
        if adapter.source.is_local:
            adapters[adapter.name] = {
                "folder": container_path("adapters", adapter.name, adapter.source)
            }
        else:
            adapters[adapter.name] = {
                "repo": adapter.source.repo,
                "revision": adapter.source.revision,
            }

    scaling = deployment.scaling
    function_options: list[tuple[str, Any, str]] = [("gpu", deployment.gpu.modal_spec, "")]
    # Modal bounds a container's start (model download and load, the snapshot's warm-up) by
    # `startup_timeout`, falling back to `timeout`: set it, or a 5-minute request timeout caps it.
    # Durations are rendered as `5 * MINUTES`; one that is not whole minutes says its unit.
    function_options.append(
        (
            "startup_timeout",
            scaling.startup_timeout,
            "longest a container may take to start: download and load"
            + _in_seconds(scaling.startup_timeout),
        )
    )
    function_options.append(
        (
            "scaledown_window",
            scaling.scaledown_window,
            "idle time before a container stops" + _in_seconds(scaling.scaledown_window),
        )
    )
    if scaling.timeout is not None:
        function_options.append(
            (
                "timeout",
                scaling.timeout,
                "longest a request may take" + _in_seconds(scaling.timeout),
            )
        )
    for key, why in (
        ("min_containers", "kept warm even with no traffic"),
        ("max_containers", "upper bound on replicas"),
        ("buffer_containers", "idle replicas kept ready beyond demand"),
    ):
        value = getattr(scaling, key)
        if value is not None and not (key == "min_containers" and value == 0):
            function_options.append((key, value, why))

    concurrency = {}
    if scaling.max_concurrent_inputs is not None:
        concurrency["max_inputs"] = scaling.max_concurrent_inputs
        if scaling.target_concurrent_inputs is not None:
            concurrency["target_inputs"] = scaling.target_concurrent_inputs

    secrets = ([deployment.auth.api_key_secret] if deployment.auth.api_key_secret else []) + [
        s for s in deployment.secrets if s != deployment.auth.api_key_secret
    ]
    model_ids = deployment.model_ids
    return {
        "name": deployment.name,
        "sources": [_comment(s) for s in deployment.sources],
        "title": _comment(_title(deployment)),
        "model_ids": [_comment(m) for m in model_ids],
        "image": {
            "base": deployment.image.base,
            "python": deployment.image.python,
            "packages": [f"vllm=={deployment.vllm.version}", *deployment.image.pip],
            "env": dict(deployment.image.env),
        },
        "base_model": base_model,
        "served_name": base.served_name,
        "adapters": adapters,
        "local_folders": local_folders,
        "volumes": {HF_CACHE: "huggingface-cache", VLLM_CACHE: "vllm-cache"},
        "server": vllm_server(deployment.image.python),
        "flags": vllm_flags(deployment),
        "weight_files": weight_files(deployment),
        "weight_file_kinds": WEIGHT_FILE_KINDS,
        "not_fetched": unfetched_files(deployment),
        "port": VLLM_PORT,
        "function_options": function_options,
        "durations": [key for key, _, _ in function_options if key in DURATION_OPTIONS],
        "secrets": secrets,
        "api_key_secret": deployment.auth.api_key_secret,
        "credential_name": CREDENTIAL_NAME.pattern,
        "env_from_secrets": list(deployment.vllm.env_from_secrets),
        "auth_guard": {
            "file": f"{AUTH_GUARD_MODULE}.py",
            "container_path": f"{CONTAINER_APP_FOLDER}/{AUTH_GUARD_MODULE}.py",
            "lines": _auth_guard_lines(),  # for templates that write it out themselves
            "digest_variable": AUTH_DIGEST_VARIABLE,
        }
        if deployment.auth.api_key_secret
        else None,
        "concurrency": concurrency,
        "startup_timeout": scaling.startup_timeout,
        "startup_timeout_comment": _duration(scaling.startup_timeout),
        "proxy_auth": deployment.auth.proxy,
        "base_revision": base.source.revision,
        "gpu_snapshot": deployment.cold_start.gpu_snapshot,
        "served_models": model_ids,
        # Shipped to the container by every app; the API key middleware only with auth_guard.
        "runtime_files": {
            f"{RUNTIME_MODULE}.py": f"{CONTAINER_APP_FOLDER}/{RUNTIME_MODULE}.py",
        },
    }


DURATION_OPTIONS = ("startup_timeout", "scaledown_window", "timeout")


def _in_seconds(seconds: int) -> str:
    return "" if duration(seconds).endswith("MINUTES") else ", in seconds"


@functools.cache
def _runtime_files() -> tuple[tuple[str, str], ...]:
    """(name beside the app, text) of each runtime file, read from our templates/."""
    return tuple(
        (name, (templates_dir() / template).read_text(encoding="utf-8"))
        for name, template in RUNTIME_FILES.items()
    )


@functools.cache
def _auth_guard_lines() -> list[str]:
    """The API key middleware's source, a line per literal: the app writes it out for vLLM."""
    return (templates_dir() / AUTH_GUARD_FILE).read_text(encoding="utf-8").splitlines(keepends=True)


def _title(deployment: Deployment) -> str:
    n = len(deployment.adapters)
    adapters = "no LoRA adapters" if n == 0 else f"{n} LoRA adapter{'s' * (n != 1)}"
    base = deployment.base_model.source.describe()
    return (
        f"{deployment.name}: {base} with {adapters}, served by vLLM "
        f"{deployment.vllm.version} on Modal ({deployment.gpu.modal_spec})"
    )


def render(deployment: Deployment, out_dir: Path, templates: Path | None = None) -> RenderedApp:
    """`templates`: another templates/ folder (e.g. a git ref's, to compare against); default ours."""
    app_dir = Path(os.path.abspath(out_dir)) / deployment.name
    values = context(deployment, app_dir)
    body = _fill(_template(templates), values, templates)
    if (
        templates is not None
    ):  # a project's own template: make sure it wrote Python (ours is tested)
        try:
            compile(body, str(app_dir / APP_FILE), "exec")
        except SyntaxError as exc:
            raise TemplateProblem(
                f"{templates / TEMPLATE_NAME}: error: it rendered "
                f"{deployment.name}/{APP_FILE} that is not valid Python (line "
                f"{exc.lineno}: {exc.msg})"
            ) from None
    declared = _declared_encoding(body)
    if declared not in ("utf-8", "utf-8-sig"):
        where = templates / TEMPLATE_NAME if templates is not None else TEMPLATE_NAME
        raise TemplateProblem(
            f"{where}: error: it rendered {deployment.name}/{APP_FILE} declaring the "
            f"source encoding {declared!r} in its first lines; apps are UTF-8"
        )
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    # The marker is a whole line of the template, before any user text can precede it in the file.
    source = body.replace("\n" + HASH_MARKER + "PENDING\n", "\n" + HASH_MARKER + digest + "\n", 1)
    hashed = None
    if values["local_folders"]:
        # Paths from the app to its local folders depend on where it is rendered (--out, the
        # working folder); what runs does not. Hash a render with the paths left out.
        values["local_folders"] = {remote: "<local folder>" for remote in values["local_folders"]}
        hashed = _fill(_template(templates), values, templates)
    return RenderedApp(
        deployment.name, source, digest, app_dir / APP_FILE, hashed, _runtime_files()
    )


def _declared_encoding(source: str) -> str:
    """The encoding Python will read the file in, from a coding comment on its first two lines."""
    try:
        return tokenize.detect_encoding(
            io.BytesIO(source.encode("utf-8", errors="replace")).readline
        )[0]
    except SyntaxError as exc:  # an unknown encoding name
        return str(exc)


def code_hash(source: str) -> str:
    """The code of a rendered app without its comments and blank lines: a reworded comment
    deploys nothing. Line by line, as it is fast and safe for what we render: every value is a
    one-line Python literal, so a line that starts with `#` is a comment, and only a line with a
    `#` after code needs Python's tokenizer to tell a comment from a `#` inside a string."""
    kept = []
    for line in source.split("\n"):  # not splitlines(): it also splits at U+2028 and friends
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        kept.append(_without_comment(line) if "#" in line else line.rstrip())
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()


def _without_comment(line: str) -> str:
    tokens = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline):
            tokens.append(token)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass  # a line of a multi-line statement ends early; the tokens so far are what we need
    if not any(t.type == tokenize.COMMENT for t in tokens):
        return line.rstrip()
    cut = next(t for t in tokens if t.type == tokenize.COMMENT).start[1]
    return (line[: len(line) - len(line.lstrip())] + line.strip()[:cut]).rstrip()


# What an app folder may hold: the app, the runtime files render writes beside it, and what
# `serve --local` writes. Not a __pycache__: Python runs a cached .pyc there instead of app.py (an
# unchecked hash-based one without even looking at the source), and nothing of ours writes one.
OWN_ENTRIES = {APP_FILE, *RUNTIME_FILES, LOG_FILE, STATE_FILE}


def _foreign_entries(folder: Path) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise OutputProblem(f"cannot list {folder}: {exc.strerror}") from None
    return [name for name in names if name not in OWN_ENTRIES and not name.startswith(".app.")]


def _current(path: Path, text: str) -> str | None:
    """What is at `path` now, if it is a plain file no larger than `text` (a committed link
    there, to /dev/zero or /proc/kmsg, is never read)."""
    data = read_plain(path, len(text.encode("utf-8")))
    return data.decode("utf-8", errors="replace") if data is not None else None


def current_app(app: RenderedApp) -> str | None:
    """What is at the app's path now (see `_current`), or None if a runtime file beside it is not
    the one render writes: the app folder as a whole is then out of date."""
    folder = app.path.parent
    if any(_current(folder / name, text) != text for name, text in app.runtime_files):
        return None
    return _current(app.path, app.source)


def write(app: RenderedApp) -> bool:
    """Write the app and its runtime files, each atomically (a crash leaves the previous file
    whole). Returns False if all were unchanged."""
    folder = app.path.parent
    if link := linked_part(
        folder.parent
    ):  # a committed `build` (or `out` in out/apps) link would send the apps anywhere
        raise OutputProblem(
            f"{link} is a link to {real(link) or os.readlink(link)}; pass the real folder "
            "with --out if that is where apps belong"
        )
    if (
        folder.is_symlink()
        or (folder.exists() and not folder.is_dir())
        or any(path.exists() and not path.is_file() for path, _ in app.files())
    ):
        raise OutputProblem(
            f"{folder} must be a plain folder holding {APP_FILE} (it is a link, or "
            "something else is in the way); remove it and render again"
        )
    if foreign := _foreign_entries(folder):
        raise OutputProblem(
            f"{folder} holds {', '.join(foreign)}, which the deployer did not write: "
            "`modal deploy` imports the app with its folder first on Python's import "
            "path, where such a file could stand in for a module; remove it"
        )
    stale = [(path, text) for path, text in app.files() if _current(path, text) != text]
    if not stale:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputProblem(f"cannot create {folder}: {exc.strerror or exc}") from None
    for path, text in stale:
        _write_atomically(path, text)
    return True


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".app.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an app file is not a secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
