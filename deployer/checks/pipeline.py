"""load → merge defaults → schema → model → checks, for a set of files or folders.

This is what `validate` runs, and what every later command runs first.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Mapping, Sequence

from deployer.checks import run_checks
from deployer.checks.accept import settle
from deployer.checks.engine import check_engine
from deployer.core import patterns
from deployer.core.budget import parse_budget, run_scope
from deployer.core.diagnostics import Diagnostic, Severity
from deployer.core.limits import (
    CHECK_SECONDS,
    MAX_RUN_BYTES,
    MAX_RUN_CHARS,
    MAX_RUN_FILES,
    MAX_RUN_VALUES,
)
from deployer.core.paths import display_path
from deployer.sources.adapters import with_adapter_configs
from deployer.sources.base_model import with_base_model_info
from deployer.sources.folders import ALLOW_ENV, leads_to, outside_repository, refused_sources
from deployer.sources.lock import with_lock
from deployer.spec.load import DEFAULTS_FILE, Document, load_bytes, load_file, merge_defaults
from deployer.spec.model import Deployment, build_deployment, name_from_file
from deployer.spec.schema import failed_parts, schema, validate

YAML_SUFFIXES = (".yaml", ".yml")
# A deployment that picks a Hub repo or a local path for its base model replaces the defaults' choice.
SOURCE_ALTERNATIVES = {("base_model",): (frozenset({"repo", "revision"}), frozenset({"path"}))}
DEFAULT_FOLDER = Path("deployments")


@dataclass(frozen=True)
class Checked:
    deployments: tuple[Deployment, ...]
    diagnostics: tuple[Diagnostic, ...]  # errors and warnings
    files: tuple[str, ...]
    notes: tuple[Diagnostic, ...] = ()  # checks that could not run here (e.g. offline), and why

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def find_deployments() -> Path:
    """The project's deployments/ folder, looked for as git looks for `.git`: in the working folder,
    then each folder above it, up to the repository's root (the first folder with a
    `.git`). Relative to the working folder (`deployments`, `../deployments`), so what is printed
    from the project's root reads as it always has; DEFAULT_FOLDER when there is none."""
    here = Path.cwd()
    for levels, folder in enumerate([here, *here.parents]):
        if (folder / DEFAULT_FOLDER).is_dir():
            return Path(*[os.pardir] * levels, DEFAULT_FOLDER)
        if (folder / ".git").exists():
            break
    return DEFAULT_FOLDER


def discover(
    paths: Sequence[Path], new: Collection[Path] = ()
) -> tuple[list[Path], list[Diagnostic]]:
    """Deployment files named by `paths` (files, or folders searched one level deep); without
    paths, the project's deployments/ (find_deployments). A file not yet on disk is taken when
    its absolute path is in `new` (its text is checked before it is written)."""
    files: list[Path] = []
    problems: list[Diagnostic] = []
    for path in paths or [find_deployments()]:
        if path.is_dir():
            try:
                entries = sorted(path.iterdir())
            except OSError as exc:
                problems.append(
                    Diagnostic(
                        display_path(path),
                        0,
                        0,
                        f"cannot list the folder: {exc.strerror}",
                        hint="check its permissions",
                        rule="files.unreadable",
                    )
                )
                continue
            for entry in entries:
                if (
                    entry.suffix in YAML_SUFFIXES
                    and entry.is_file()
                    and (problem := _linked_out(entry))
                ):
                    problems.append(problem)
                elif (
                    entry.suffix in YAML_SUFFIXES
                    and not entry.name.startswith("_")
                    and entry.is_file()
                ):
                    files.append(entry)
        elif path.is_file() and (problem := _linked_out(path)):
            problems.append(problem)
        elif path.is_file() or Path(os.path.abspath(path)) in new:
            files.append(path)
        else:
            hint = (
                "run inside the project that holds deployments/ (looked for here and in the "
                "folders above), or name the files to check"
                if path == DEFAULT_FOLDER
                else "check the path"
            )
            problems.append(
                Diagnostic(
                    display_path(path),
                    0,
                    0,
                    "no such file or folder",
                    hint=hint,
                    rule="files.missing",
                )
            )
    unique = list(dict.fromkeys(Path(os.path.abspath(f)) for f in files))
    return unique, problems


def _linked_out(file: Path) -> Diagnostic | None:
    """A deployment file that is a link, or sits in a folder linked out of the repository, is not
    read: it could bring in anything the checkout holds (.env, .git/config) or anything on the
    machine (/proc/self/environ holds the CI job's secrets), and errors quote what they read."""
    hint = (
        f"keep deployment files in the repository as plain files (set {ALLOW_ENV}=1 on a "
        "trusted machine to allow links out)"
    )
    if root := outside_repository(file, file.parent):
        return Diagnostic(
            display_path(file),
            0,
            0,
            f"{leads_to(file, root, ' through a link')}; not read",
            hint=hint,
            rule="files.outside-repo",
        )
    if file.is_symlink() and os.environ.get(ALLOW_ENV) != "1":
        return Diagnostic(
            display_path(file),
            0,
            0,
            "is a link; deployment files are read only as plain files",
            hint="copy the file instead of linking it",
            rule="files.link",
        )
    return None


def check_paths(
    paths: Sequence[Path],
    schema_only: bool = False,
    replaced: Mapping[Path, bytes] | None = None,
    engine: bool = False,
    vllm_python: str | None = None,
) -> Checked:
    """Everything found in the deployment files under `paths`. `schema_only` stops after the
    JSON Schema (no adapter or model reading, no semantic checks): for editors and benchmarks.
    `replaced` maps a file's absolute path to the text checked in place of its own (an edit,
    checked before it is written). `engine` also hands each deployment's command line to the
    vLLM of `vllm_python` (checks/engine.py; a note when it is None): `validate` only, since
    importing vLLM costs seconds."""
    with run_scope(), parse_budget(), patterns.budget(CHECK_SECONDS):
        return _check_paths(paths, schema_only, replaced or {}, engine, vllm_python)


def _check_paths(
    paths: Sequence[Path],
    schema_only: bool,
    replaced: Mapping[Path, bytes],
    engine: bool = False,
    vllm_python: str | None = None,
) -> Checked:
    files, diagnostics = discover(paths, new=replaced.keys())
    defaults_by_folder: dict[Path, tuple[Document | None, bool]] = {}
    deployments: list[Deployment] = []  # from files without errors: what later commands use
    checked_too: list[Deployment] = []  # and those built from the parts that passed
    partly: dict[str, frozenset[str]] = {}  # file → the top-level keys that failed the schema
    checked: list[str] = []

    budget = _RunBudget()
    for file in files:
        if file.name == DEFAULTS_FILE:
            _defaults_for(file.parent, defaults_by_folder, diagnostics, checked, budget)
            continue
        defaults, defaults_ok = _defaults_for(
            file.parent, defaults_by_folder, diagnostics, checked, budget
        )
        if budget.spent:
            break
        display = display_path(file)
        if over := budget.read(file, display):
            diagnostics.append(over)
            break
        checked.append(display)
        raw = replaced.get(file)
        document, problems = load_file(file, display) if raw is None else load_bytes(raw, display)
        diagnostics += problems
        if over := budget.loaded(document, display):
            diagnostics.append(over)
            break
        if document is None or problems or not defaults_ok:
            continue
        if not isinstance(document.data, dict):
            what = (
                "empty"
                if document.data is None
                else f"a {type(document.data).__name__}, not a mapping"
            )
            diagnostics.append(
                Diagnostic(
                    display,
                    1,
                    1,
                    f"a deployment file must be a mapping of keys; this one is {what}",
                    hint="start from deployments/chess-puzzle.yaml",
                    rule="files.not-a-mapping",
                )
            )
            continue
        merged = merge_defaults(defaults, document, SOURCE_ALTERNATIVES)
        if over := budget.merged(document, merged, file.parent / DEFAULTS_FILE, display):
            diagnostics.append(over)
            break
        schema_problems = validate(merged)
        name_problems = _file_name_problems(merged)
        diagnostics += schema_problems + name_problems
        if schema_only:
            continue
        base_dirs = {display_path(f): f.parent for f in (file, file.parent / DEFAULTS_FILE)}
        if schema_problems or name_problems:
            failed = (failed_parts(merged.data) if schema_problems else frozenset()) | {
                "name" for _ in name_problems
            }
            if (partial := _partial(merged, failed)) is not None:
                partly[partial.file] = failed
                checked_too.append(
                    _enriched(build_deployment(partial, base_dirs), file.parent, failed)
                )
            continue
        deployment = _enriched(build_deployment(merged, base_dirs), file.parent, frozenset())
        deployments.append(deployment)
        checked_too.append(deployment)

    if not schema_only:
        diagnostics += run_checks(checked_too, partly)
        if engine:
            whole_vllm = [d for d in checked_too if "vllm" not in partly.get(d.file, ())]
            diagnostics += check_engine(whole_vllm, diagnostics, vllm_python)
    unique = sorted(set(settle(diagnostics)), key=lambda d: (d.file, d.line, d.column, d.message))
    notes = tuple(d for d in unique if d.severity is Severity.NOTE)
    findings = tuple(d for d in unique if d.severity is not Severity.NOTE)
    return Checked(tuple(deployments), findings, tuple(dict.fromkeys(checked)), notes)


# What stands in for a required part that failed the schema, so the rest of the file can be built
# and checked; no check that reads the part runs (checks/__init__.py, READS).
PLACEHOLDERS = {
    "base_model": {"repo": "placeholder/failed-the-schema"},
    "gpu": "T4",
    "vllm": {"version": "0.0.0"},
    "auth": "none",
}


def _partial(document: Document, failed: frozenset[str]) -> Document | None:
    """`document` with each top-level part in `failed` dropped (its schema default applies) or, when
    required, replaced by a placeholder; None when that still does not pass the schema. The parts
    are whole top-level keys: an error in one adapter fails `adapters`, since the checks place
    findings by each adapter's index."""
    data = {key: value for key, value in document.data.items() if key not in failed}
    data.update({key: value for key, value in PLACEHOLDERS.items() if key in failed})
    if failed_parts(data):
        return None
    return dataclasses.replace(document, data=data)


def _enriched(deployment: Deployment, folder: Path, failed: frozenset[str]) -> Deployment:
    """What the checks read beyond the file: the lock, adapter configs, the base model's config
    (not for a placeholder base model)."""
    refused = refused_sources(deployment)
    # The lock first: configs are read at the commits it pins, which the app downloads.
    deployment = with_lock(deployment, folder)
    deployment = with_adapter_configs(deployment, refused)
    return deployment if "base_model" in failed else with_base_model_info(deployment, refused)


class _RunBudget:
    """Counts what the run has read against MAX_RUN_FILES, _BYTES, _VALUES and _CHARS; each
    method returns the error for the file that goes over, else None."""

    def __init__(self) -> None:
        self.files = self.bytes = self.values = self.chars = 0
        self.sizes: dict[Path, int] = {}
        self.spent = False

    def read(self, file: Path, display: str) -> Diagnostic | None:
        self.files += 1
        try:
            self.sizes[file] = file.stat().st_size
        except OSError:
            pass  # load_file says why it cannot read it
        if self.files > MAX_RUN_FILES:
            return self._over(display, f"more than {MAX_RUN_FILES:,} deployment files")
        return self._add(self.sizes.get(file, 0), 0, display)

    def loaded(self, document: Document | None, display: str) -> Diagnostic | None:
        return self._add(0, len(document.values) if document else 0, display)

    def merged(
        self, document: Document, merged: Document, defaults_file: Path, display: str
    ) -> Diagnostic | None:
        # What a defaults file holds ends up in each app rendered from it: a 900 KB value in
        # _defaults.yaml beside 5,000 small deployments is 4.5 GB of rendered apps.
        self.chars += _text_chars(merged.data)
        if self.chars > MAX_RUN_CHARS:
            return self._over(
                display,
                f"more than {MAX_RUN_CHARS >> 20} million characters of text in its "
                "deployments, with YAML aliases expanded and defaults merged in",
            )
        return self._add(
            self.sizes.get(defaults_file, 0), len(merged.values) - len(document.values), display
        )

    def _add(self, size: int, values: int, display: str) -> Diagnostic | None:
        self.bytes += size
        self.values += values
        if self.bytes > MAX_RUN_BYTES:
            return self._over(
                display,
                f"more than {MAX_RUN_BYTES >> 20} MB of deployment files (defaults counted "
                "once for each deployment they are merged into)",
            )
        if self.values > MAX_RUN_VALUES:
            return self._over(
                display,
                f"more than {MAX_RUN_VALUES:,} values in its deployment files (defaults "
                "counted once for each deployment they are merged into)",
            )
        return None

    def _over(self, display: str, what: str) -> Diagnostic:
        self.spent = True
        return Diagnostic(
            display,
            1,
            1,
            f"this run reads {what}; the deployer stops here, and the files after this one "
            "are not checked",
            hint="check fewer files or folders in one run (`deployer validate "
            "deployments/team-a`), or make the files and their defaults smaller",
            rule="files.too-many",
        )


def _text_chars(data: object) -> int:
    """Characters of every key and string in a deployment's values (a walk, not a recursion)."""
    total, pending = 0, [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            total += sum(len(str(k)) for k in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            total += len(item)
    return total


def _defaults_for(
    folder: Path, cache: dict, diagnostics: list[Diagnostic], checked: list[str], budget: _RunBudget
) -> tuple[Document | None, bool]:
    if folder not in cache:
        path = folder / DEFAULTS_FILE
        if not path.is_file():
            cache[folder] = (None, True)
        elif problem := _linked_out(path):
            diagnostics.append(problem)
            cache[folder] = (None, False)
        elif over := budget.read(path, display_path(path)):
            diagnostics.append(over)
            cache[folder] = (None, False)
        else:
            display = display_path(path)
            checked.append(display)
            document, problems = load_file(path, display)
            diagnostics += problems
            if over := budget.loaded(document, display):
                diagnostics.append(over)
                document = None
            if (
                document is not None
                and document.data is not None
                and not isinstance(document.data, dict)
            ):
                diagnostics.append(
                    Diagnostic(
                        display,
                        1,
                        1,
                        "defaults must be a mapping of keys",
                        rule="files.not-a-mapping",
                    )
                )
                document = None
            ok = document is not None and not problems
            cache[folder] = (document if ok and document.data is not None else None, ok)
    return cache[folder]


def _file_name_problems(document: Document) -> list[Diagnostic]:
    if "name" in document.data:
        return []
    stem = name_from_file(document.file)
    spec = schema()["properties"]["name"]
    if re.fullmatch(spec["pattern"], stem):
        return []
    return [
        Diagnostic(
            document.file,
            1,
            1,
            f"the file name {stem!r} cannot be used as the app name, and no `name:` is set",
            hint=f"set `name:` in the file, or rename it; names {spec['x-hint'][4:]}",
            path=("name",),
            rule="names.file-name",
        )
    ]
