"""Deployment → one Modal app: `render()` ties the other modules together.

`context()` decides every value, the template (ours or a project's own) lays them out as Python
literals, and the result is a `RenderedApp`: the app's source, whose header carries a hash of
everything below it, and the runtime files written beside it. Output is deterministic.
`code_hash` is what plan and apply compare: the code without its comments. Writing the app into
its build folder is `deployer.render.output`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from deployer.render.context import context, locked_files, runtime_files
from deployer.render.templates import TEMPLATE_NAME, TemplateProblem, fill
from deployer.spec.model import Deployment

HASH_MARKER = "# deployer-content-hash: "
APP_FILE = "app.py"


@dataclass(frozen=True)
class RenderedApp:
    """One rendered app: its source and the files written beside it, not yet on disk."""

    name: str
    source: str
    content_hash: str  # of the whole file, written in its header
    path: Path  # where it belongs: <out>/<name>/app.py
    # What code_hash reads, if not `source`.
    hashed_source: str | None = field(default=None, repr=False)
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


def render(deployment: Deployment, out_dir: Path, templates: Path | None = None) -> RenderedApp:
    """`templates`: another templates/ folder (e.g. a git ref's, to compare with); default ours."""
    app_dir = Path(os.path.abspath(out_dir)) / deployment.name
    values = context(deployment, app_dir)
    body = fill(values, templates)
    # A project's own template: make sure it wrote Python (ours is tested).
    if templates is not None:
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
        hashed = fill(values, templates)
    beside = runtime_files() + locked_files(deployment)
    return RenderedApp(deployment.name, source, digest, app_dir / APP_FILE, hashed, beside)


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
