"""The lock: `lock/` beside `deployments/`, committed with them.

`lock/sources.yaml` records, per deployment, each Hub source's repo, its revision as the YAML
writes it (`main` when it names none), and the commit that revision resolved to (or `unresolved`,
with why); and the key of the package set its image installs. `lock/images/<key>.txt` is that
set, exactly as `uv pip compile --generate-hashes` writes it; the key is derived from what decides
the set (Python version, vLLM version, image.pip, platform), so deployments that share image
settings share one file.

Reading the lock and matching it against a deployment (`with_lock`) is all render and the checks
need: no network. Resolving (`update`) takes the Hub and uv as functions, which only the `lock`
command passes in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection, Iterable, Sequence

from deployer.core.budget import once
from deployer.core.limits import MAX_LOCK_IMAGE_BYTES, MAX_YAML_BYTES
from deployer.core.paths import display_path, linked_part, read_plain
from deployer.sources.packages import PLATFORM, pins
from deployer.spec.locked import Gap, Locked
from deployer.spec.model import Deployment, Source

LOCK_FOLDER = "lock"
SOURCES_FILE = "sources.yaml"
IMAGES_FOLDER = "images"
UNRESOLVED = "unresolved"
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
HEADER = """\
# The lock: the commit each deployment's Hub sources download at, and the package set its image
# installs (lock/images/<image>.txt). Written by `deployer lock`, which adds what is missing;
# `deployer lock --upgrade [NAME...]` moves branches, tags and packages. See docs/lock.md.
"""


class LockUnreadable(Exception):
    """The lock's files cannot be read as a lock; the message says where and why."""


@dataclass(frozen=True)
class ImageInputs:
    """What decides an image's package set."""

    python: str
    vllm: str
    pip: tuple[str, ...]
    platform: str = PLATFORM

    @property
    def requirements(self) -> tuple[str, ...]:
        """What the rendered image asks uv for: vLLM, then image.pip."""
        return (f"vllm=={self.vllm}", *self.pip)

    @property
    def key(self) -> str:
        digest = hashlib.sha256(
            json.dumps([self.python, self.vllm, list(self.pip), self.platform]).encode()
        ).hexdigest()[:10]
        return re.sub(r"[^A-Za-z0-9._-]", "_", f"py{self.python}-vllm{self.vllm}-{digest}")


@dataclass(frozen=True)
class Pin:
    """One Hub source in the lock: as written, and what it resolved to."""

    repo: str
    revision: str
    commit: str | None  # None: unresolved
    why: str = ""  # why it is unresolved

    def describe(self) -> str:
        return f"{self.repo}@{self.revision}"


@dataclass(frozen=True)
class Entry:
    image: str  # the key of its package set
    base_model: Pin | None  # None: a local folder
    adapters: tuple[tuple[str, Pin], ...] = ()  # (adapter name, pin) of its Hub adapters

    def pins(self) -> list[tuple[str | None, Pin]]:
        """(adapter name, or None for the base model; pin)."""
        base = [(None, self.base_model)] if self.base_model else []
        return base + list(self.adapters)


@dataclass(frozen=True)
class Lock:
    entries: dict[str, Entry]
    images: dict[str, ImageInputs]
    packages: dict[str, str]  # image key → its locked package set (those whose file is there)


@dataclass(frozen=True)
class Move:
    """A source whose pin changed (or would): `old` and `new` commits, None when unresolved."""

    deployment: str
    what: str
    old: str | None
    new: str | None
    revision: str = ""  # the branch or tag that moved, as the YAML writes it

    def describe(self) -> str:
        old, new = (c[:12] if c else UNRESOLVED for c in (self.old, self.new))
        return f"{self.deployment}: {self.what}: {old} → {new}"


# -- what a deployment needs locked ---------------------------------------------------------------


def folder_for(deployments: Path) -> Path:
    """The lock folder of a deployments folder: beside it."""
    return Path(os.path.abspath(deployments)).parent / LOCK_FOLDER


def inputs_for(deployment: Deployment) -> ImageInputs:
    return ImageInputs(deployment.image.python, deployment.vllm.version, deployment.image.pip)


def hub_sources(deployment: Deployment) -> list[tuple[str | None, Source, tuple, str]]:
    """(adapter name or None for the base model, source, YAML path, description) of each Hub
    source."""
    found = []
    for declared in deployment.declared_sources:
        source = declared.source
        if source.is_local:
            continue
        what = "base model" if declared.adapter is None else f"adapter {declared.adapter!r}"
        path = declared.yaml_path[:-1] + ("repo",)
        found.append((declared.adapter, source, path, f"{what} ({_written(source)})"))
    return found


def _written(source: Source) -> str:
    return f"{source.repo}@{source.revision or 'main'}"


def locked_commit(locked: Locked | None, adapter: str | None) -> str | None:
    """The commit the lock pins the base model (None) or an adapter to, if it pins one."""
    if locked is None:
        return None
    return locked.base_commit if adapter is None else locked.adapter_commit(adapter)


def as_downloaded(source: Source, locked: Locked | None, adapter: str | None = None) -> Source:
    """`source` at the commit its app downloads: the locked one, when the lock pins it, so that
    what validate reads (configs, tokenizer files, cached weights) is what will be served; as
    the YAML writes it otherwise."""
    commit = locked_commit(locked, adapter) if source.repo is not None else None
    return dataclasses.replace(source, revision=commit) if commit else source


# -- reading ---------------------------------------------------------------------------------------


def with_lock(deployment: Deployment, deployments_folder: Path) -> Deployment:
    """The deployment with what the lock beside its folder pins for it (`Deployment.lock`)."""
    folder = folder_for(deployments_folder)
    display = display_path(folder / SOURCES_FILE)
    try:
        lock = once(("lock", folder), lambda: read_lock(folder))
    except LockUnreadable as exc:
        return dataclasses.replace(deployment, lock=Locked(display, True, problem=str(exc)))
    return dataclasses.replace(deployment, lock=locked_view(deployment, lock, display))


def read_lock(folder: Path) -> Lock | None:
    """The lock in `folder`; None when there is none. Raises LockUnreadable."""
    from deployer.spec.load import load_bytes

    sources = folder / SOURCES_FILE
    if not os.path.lexists(sources):
        return None
    display = display_path(sources)
    if link := linked_part(sources):
        raise LockUnreadable(
            f"{display}: {display_path(link)} is a link; the lock is read as plain files"
        )
    raw = read_plain(sources, MAX_YAML_BYTES)
    if raw is None:
        raise LockUnreadable(
            f"{display} is not a plain file of at most {MAX_YAML_BYTES >> 20} MB that can be read"
        )
    document, problems = load_bytes(raw, display)
    if problems or document is None:
        first = problems[0] if problems else None
        where = f"{display}:{first.line}:{first.column}" if first else display
        raise LockUnreadable(f"{where}: {first.message if first else 'cannot be read'}")
    return _parse(document.data or {}, folder, display)


def _parse(data, folder: Path, display: str) -> Lock:
    def fail(where: str, what: str):
        raise LockUnreadable(f"{display}: {where}: {what} (run `deployer lock` to rewrite it)")

    def mapping(value, where: str) -> dict:
        if not isinstance(value, dict):
            fail(where, "expected a mapping")
        return value

    def text(value, where: str) -> str:
        if not isinstance(value, str):
            fail(where, "expected a string")
        return value

    def pin(value, where: str) -> Pin:
        value = mapping(value, where)
        commit = text(value.get("commit"), f"{where}.commit")
        if commit != UNRESOLVED and not FULL_COMMIT.fullmatch(commit):
            fail(f"{where}.commit", f"expected a 40-character commit or {UNRESOLVED!r}")
        return Pin(
            text(value.get("repo"), f"{where}.repo"),
            text(value.get("revision"), f"{where}.revision"),
            None if commit == UNRESOLVED else commit,
            str(value.get("why") or ""),
        )

    data = mapping(data, "the file")
    images: dict[str, ImageInputs] = {}
    for key, spec in mapping(data.get("images") or {}, "images").items():
        where = f"images.{key}"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            fail(where, "not an image key")
        spec = mapping(spec, where)
        requirements = spec.get("requirements")
        if not isinstance(requirements, list) or not all(isinstance(r, str) for r in requirements):
            fail(f"{where}.requirements", "expected a list of strings")
        vllm = requirements[0].removeprefix("vllm==") if requirements else ""
        images[key] = ImageInputs(
            text(spec.get("python"), f"{where}.python"),
            vllm,
            tuple(requirements[1:]),
            text(spec.get("platform"), f"{where}.platform"),
        )
    entries: dict[str, Entry] = {}
    for name, spec in mapping(data.get("deployments") or {}, "deployments").items():
        where = f"deployments.{name}"
        spec = mapping(spec, where)
        base = spec.get("base_model")
        entries[str(name)] = Entry(
            text(spec.get("image"), f"{where}.image"),
            pin(base, f"{where}.base_model") if base is not None else None,
            tuple(
                (str(adapter), pin(value, f"{where}.adapters.{adapter}"))
                for adapter, value in mapping(
                    spec.get("adapters") or {}, f"{where}.adapters"
                ).items()
            ),
        )
    packages = {}
    for key in images:
        raw = read_plain(folder / IMAGES_FOLDER / f"{key}.txt", MAX_LOCK_IMAGE_BYTES)
        if raw is not None:
            packages[key] = raw.decode("utf-8", errors="replace")
    return Lock(entries, images, packages)


def locked_view(deployment: Deployment, lock: Lock | None, display: str) -> Locked:
    """What `lock` pins for `deployment`, what it lacks and what it records unresolved."""
    if lock is None:
        return Locked(display, False)
    entry = lock.entries.get(deployment.name)
    missing: list[Gap] = []
    unresolved: list[Gap] = []
    commits: dict[str | None, str] = {}
    locked_pins = dict(entry.pins()) if entry else {}
    for adapter, source, path, what in hub_sources(deployment):
        pin = locked_pins.get(adapter)
        if pin is None:
            missing.append(Gap(what, f"is not in {display}", path))
        elif (pin.repo, pin.revision) != (source.repo, source.revision or "main"):
            missing.append(
                Gap(what, f"is locked as {pin.describe()}, not as the YAML now says", path)
            )
        elif pin.commit is None:
            unresolved.append(Gap(what, pin.why or "no commit recorded", path))
        else:
            commits[adapter] = pin.commit
    inputs = inputs_for(deployment)
    image_path = ("vllm", "version")
    requirements = None
    if entry is None:
        missing.append(Gap("the image's packages", f"are not in {display}", image_path))
    elif entry.image != inputs.key:
        was = lock.images.get(entry.image)
        missing.append(
            Gap("the image's packages", f"are locked for {_changed(was, inputs)}", image_path)
        )
    elif inputs.key not in lock.packages:
        missing.append(
            Gap(
                "the image's packages",
                f"are not in {LOCK_FOLDER}/{IMAGES_FOLDER}/{inputs.key}.txt",
                image_path,
            )
        )
    else:
        requirements = lock.packages[inputs.key]
    return Locked(
        display,
        True,
        base_commit=commits.get(None),
        adapter_commits=tuple((k, v) for k, v in commits.items() if k is not None),
        requirements=requirements,
        missing=tuple(missing),
        unresolved=tuple(unresolved),
    )


def _changed(was: ImageInputs | None, now: ImageInputs) -> str:
    if was is None:
        return "other image settings"
    changes = [
        f"{label} {old} (the YAML now says {new})"
        for label, old, new in (
            ("Python", was.python, now.python),
            ("vLLM", was.vllm, now.vllm),
            ("image.pip", list(was.pip), list(now.pip)),
            ("platform", was.platform, now.platform),
        )
        if old != new
    ]
    return ", ".join(changes) or "other image settings"


def floating(deployment: Deployment) -> list[str]:
    """What a deployment without a lock leaves to whatever is newest when its image is built or a
    container starts."""
    hub = [f"{what}" for _, _, _, what in hub_sources(deployment)]
    return hub + [f"the image's packages beyond {', '.join(inputs_for(deployment).requirements)}"]


# -- resolving -------------------------------------------------------------------------------------


@dataclass
class Update:
    """What `update` made: the new lock, what moved, and what could not be resolved."""

    lock: Lock
    moves: list[Move]
    package_changes: list[str]  # "image <key>: torch 2.9.0 → 2.9.1", ...
    unresolved: list[str]  # "chess-puzzle: adapter 'x' (org/x@main): why"


def update(
    lock: Lock | None,
    deployments: Sequence[Deployment],
    resolve_commit: Callable[[str, str], tuple[str | None, str]],
    compile_packages: Callable[[ImageInputs], str],
    upgrade: Collection[str] | None = None,
    allow_unresolved: bool = True,
) -> Update:
    """The lock for `deployments` (entries of others are dropped). Without `upgrade`, what `lock`
    pins and the YAML still says is kept, and only the rest is resolved; `upgrade` names the
    deployments whose branches, tags and packages are resolved again (empty: all).
    `resolve_commit(repo, revision)` → (commit, "") or (None, why); `compile_packages` raises
    when it cannot resolve (nothing is written then). Unless `allow_unresolved`, packages are
    not resolved once a source could not be (the lock is not written then)."""
    old = lock or Lock({}, {}, {})
    upgrading = (
        set()
        if upgrade is None
        else ({d.name for d in deployments} if not upgrade else set(upgrade))
    )
    resolved: dict[tuple[str, str], tuple[str | None, str]] = {}
    entries: dict[str, Entry] = {}
    moves: list[Move] = []
    unresolved: list[str] = []
    for deployment in sorted(deployments, key=lambda d: d.name):
        was = old.entries.get(deployment.name)
        was_pins = dict(was.pins()) if was else {}
        pins_now: dict[str | None, Pin] = {}
        for adapter, source, _, what in hub_sources(deployment):
            revision = source.revision or "main"
            kept = was_pins.get(adapter)
            same = kept is not None and (kept.repo, kept.revision) == (source.repo, revision)
            if same and kept.commit and deployment.name not in upgrading:
                pins_now[adapter] = kept
                continue
            key = (source.repo, revision)
            if key not in resolved:
                resolved[key] = resolve_commit(*key)
            commit, why = resolved[key]
            pins_now[adapter] = Pin(source.repo, revision, commit, "" if commit else why)
            if commit is None:
                unresolved.append(f"{deployment.name}: {what}: {why}")
            if same and kept.commit != commit:
                moves.append(Move(deployment.name, what, kept.commit, commit))
        base = pins_now.pop(None, None)
        entries[deployment.name] = Entry(inputs_for(deployment).key, base, tuple(pins_now.items()))
    images = {inputs_for(d).key: inputs_for(d) for d in deployments}
    if unresolved and not allow_unresolved:
        return Update(Lock(entries, images, {}), moves, [], unresolved)
    packages: dict[str, str] = {}
    changes: list[str] = []
    upgraded_keys = {inputs_for(d).key for d in deployments if d.name in upgrading}
    for key, inputs in sorted(images.items()):
        before = old.packages.get(key) if old.images.get(key) == inputs else None
        if before is not None and key not in upgraded_keys:
            packages[key] = before
            continue
        packages[key] = compile_packages(inputs)
        if before is not None:
            changes += [f"image {key}: {c}" for c in package_changes(before, packages[key])]
    return Update(Lock(entries, images, packages), moves, changes, unresolved)


def package_changes(before: str, after: str) -> list[str]:
    """`name old → new`, `+ name version`, `- name version` between two package sets."""
    old, new = pins(before), pins(after)
    found = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            found.append(f"- {name} {old[name]}")
        elif name not in old:
            found.append(f"+ {name} {new[name]}")
        elif old[name] != new[name]:
            found.append(f"{name} {old[name]} → {new[name]}")
    return found


def upstream_moves(
    lock: Lock, resolve_commit: Callable[[str, str], tuple[str | None, str]]
) -> Iterable[Move]:
    """Each locked branch or tag whose commit upstream is no longer the locked one (sources
    pinned to a full commit cannot move; unresolved ones are `deployer lock`'s, not moves)."""
    resolved: dict[tuple[str, str], tuple[str | None, str]] = {}
    for name, entry in sorted(lock.entries.items()):
        for adapter, pin in entry.pins():
            if pin.commit is None or FULL_COMMIT.fullmatch(pin.revision):
                continue
            key = (pin.repo, pin.revision)
            if key not in resolved:
                resolved[key] = resolve_commit(*key)
            commit, _ = resolved[key]
            if commit and commit != pin.commit:
                what = "base model" if adapter is None else f"adapter {adapter!r}"
                yield Move(name, f"{what} ({pin.describe()})", pin.commit, commit, pin.revision)


def in_force(deployments: Iterable[Deployment]) -> Lock:
    """The pins the lock holds for `deployments` that still match their YAML (what their apps
    download at), as a lock of their own: what `plan` asks the Hub about."""
    entries = {}
    for deployment in deployments:
        pinned = [
            (adapter, Pin(source.repo, source.revision or "main", commit))
            for adapter, source, _, _ in hub_sources(deployment)
            if (commit := locked_commit(deployment.lock, adapter))
        ]
        base = dict(pinned).get(None)
        adapters = tuple((a, pin) for a, pin in pinned if a is not None)
        if base or adapters:
            entries[deployment.name] = Entry(inputs_for(deployment).key, base, adapters)
    return Lock(entries, {}, {})


# -- writing ---------------------------------------------------------------------------------------


def lock_files(lock: Lock) -> dict[str, str]:
    """Path inside the lock folder → text, of every file the lock is made of."""
    deployments = {}
    for name, entry in sorted(lock.entries.items()):
        spec: dict = {"image": entry.image}
        if entry.base_model:
            spec["base_model"] = _pin_data(entry.base_model)
        if entry.adapters:
            spec["adapters"] = {adapter: _pin_data(pin) for adapter, pin in entry.adapters}
        deployments[name] = spec
    images = {
        key: {
            "python": inputs.python,
            "platform": inputs.platform,
            "requirements": list(inputs.requirements),
        }
        for key, inputs in sorted(lock.images.items())
    }
    import yaml

    body = yaml.safe_dump(
        {"deployments": deployments, "images": images},
        sort_keys=False,
        width=100,
        allow_unicode=True,
        default_flow_style=False,
    )
    files = {SOURCES_FILE: HEADER + body}
    for key, text in sorted(lock.packages.items()):
        files[f"{IMAGES_FOLDER}/{key}.txt"] = text
    return files


def _pin_data(pin: Pin) -> dict:
    data = {"repo": pin.repo, "revision": pin.revision, "commit": pin.commit or UNRESOLVED}
    if pin.commit is None:
        data["why"] = pin.why
    return data


def write_lock(folder: Path, lock: Lock) -> list[str]:
    """Write the lock's files into `folder`, each atomically and only when changed, and remove
    package sets no deployment uses. The package sets go first: a lock that stops half-way names
    nothing it lacks. Returns the paths changed, relative to `folder`."""
    if link := linked_part(folder):
        raise LockUnreadable(f"{display_path(link)} is a link; the lock is written as plain files")
    wanted = lock_files(lock)
    changed = []
    for relative, text in sorted(wanted.items(), key=lambda item: item[0] == SOURCES_FILE):
        path = folder / relative
        if read_plain(path, len(text.encode()) + 1) == text.encode():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lock.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        changed.append(relative)
    images = folder / IMAGES_FOLDER
    for stale in sorted(images.glob("*.txt")) if images.is_dir() else []:
        if f"{IMAGES_FOLDER}/{stale.name}" not in wanted and not stale.is_symlink():
            stale.unlink()
            changed.append(f"{IMAGES_FOLDER}/{stale.name}")
    return changed
