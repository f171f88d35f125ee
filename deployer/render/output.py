"""The build folder: writing a rendered app into `<out>/<name>/`, and reading what is there.

An app folder holds only what the deployer writes (the app, its runtime files, and what
`serve --local` keeps beside it): `modal deploy` imports the app with its folder first on
Python's import path. Each file is written atomically, and only when it changed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from deployer.core.paths import linked_part, read_plain, real
from deployer.render.app import APP_FILE, RenderedApp
from deployer.render.context import REQUIREMENTS_FILE, RUNTIME_FILES

# What `serve --local` keeps beside the app: the running server, vLLM's log, and a dynamic
# deployment's adapter folder (a name no `import` can reach: the app's folder is on the path).
STATE_FILE = "local-server.json"
LOG_FILE = "vllm.log"
LOCAL_ADAPTER_FOLDER = "dynamic-adapters"


class OutputProblem(Exception):
    """The output folder cannot take the rendered app; the message says why."""


# What an app folder may hold: the app, the runtime files render writes beside it, and what
# `serve --local` writes. Not a __pycache__: Python runs a cached .pyc there instead of app.py (an
# unchecked hash-based one without even looking at the source), and nothing of ours writes one.
OWN_ENTRIES = {
    APP_FILE,
    *RUNTIME_FILES,
    REQUIREMENTS_FILE,
    LOG_FILE,
    STATE_FILE,
    LOCAL_ADAPTER_FOLDER,
}


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
    # A committed `build` (or `out` in out/apps) link would send the apps anywhere.
    if link := linked_part(folder.parent):
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
