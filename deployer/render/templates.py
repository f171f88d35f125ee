"""Finding and running the Jinja2 template that lays out an app.

The template is `templates/modal_app.py.j2`: ours, or a project's own `templates/` beside its
deployments. A project's own template is code from the repository, run in CI: it renders in a
sandbox (templates read only as plain files, no reaching into Python internals; ranges,
repetitions and powers bounded; about 5% slower than plain Jinja) within a time and a memory
budget, and any failure becomes a `TemplateProblem` that says where.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import signal
import threading
from pathlib import Path

from deployer.core.limits import (
    MAX_APP_CHARS,
    MAX_EXPONENT,
    MAX_REPEAT,
    RENDER_MEMORY,
    RENDER_SECONDS,
)
from deployer.core.paths import within
from deployer.render.literals import argv_literal, duration, literal

TEMPLATE_NAME = "modal_app.py.j2"


class TemplateProblem(Exception):
    """The template cannot be rendered (a project's own templates/ may be broken); says where."""


class RenderTimeout(Exception):
    """The template ran past its time budget (RENDER_SECONDS)."""

    def __str__(self) -> str:
        return f"rendering took longer than {RENDER_SECONDS} s; does a loop never end?"


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


def fill(values: dict, folder: Path | None = None) -> str:
    """The template in `folder` (default ours) filled with `values`: the app's source."""
    import jinja2

    template = _template(folder)
    try:
        with _time_budget(RENDER_SECONDS), _memory_budget(RENDER_MEMORY):
            # A copy: the sandbox lets a template append to a list it is given, and module-level
            # lists (argv.WEIGHT_FILE_KINDS) would keep what one render added for the next.
            body = template.render(**copy.deepcopy(values))
    # A project's template can raise anything: ZeroDivisionError, TypeError...
    except Exception as exc:
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
        # Jinja's errors and ours say what went wrong; anything else is named by its type.
        named = isinstance(exc, (jinja2.TemplateError, RenderTimeout))
        raise TemplateProblem(
            f"{(folder or templates_dir()) / TEMPLATE_NAME}:{line}: error: "
            f"{'' if named else type(exc).__name__ + ': '}{exc}"
        ) from None
    if len(body) > MAX_APP_CHARS:
        raise TemplateProblem(
            f"{(folder or templates_dir()) / TEMPLATE_NAME}: error: it rendered "
            f"{len(body):,} characters; an app is a few kilobytes (at most "
            f"{MAX_APP_CHARS:,})"
        )
    return body


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
