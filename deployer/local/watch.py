"""`serve --local` follows its deployment's YAML: what changed, and whether the running vLLM can take
it without a restart.

A dynamic deployment (`adapter_loading: dynamic`) takes new and updated adapters while it runs:
they are staged into its adapter folder and vLLM loads each on first use. Anything else changes
vLLM's command line, its environment or what it was started from, so it needs a restart; the watch
says which part changed rather than restarting on its own (a restart drops requests in flight).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from deployer.checks.pipeline import check_paths
from deployer.core.diagnostics import printable
from deployer.local.server import (
    DynamicAdapters,
    LocalError,
    import_app,
    stage_new_adapters,
    write_state,
)
from deployer.render.app import render
from deployer.render.output import OutputProblem, write
from deployer.render.templates import TemplateProblem
from deployer.sources.lock import SOURCES_FILE, folder_for, locked_commit
from deployer.spec.model import Adapter, Deployment
from deployer.vllm.argv import derived_lora_flags, vllm_flags

SHOWN_ERRORS = 5  # of a YAML edit that does not validate: the rest is `deployer validate`'s


@dataclass(frozen=True)
class AdapterChange:
    """From the deployment being served to the one now written."""

    added: tuple[Adapter, ...] = ()
    updated: tuple[Adapter, ...] = ()  # same name, another source or revision
    restart: str | None = None  # why the running server cannot take it; None: it can

    @property
    def stages(self) -> tuple[Adapter, ...]:
        return self.added + self.updated


def adapter_change(serving: Deployment, written: Deployment) -> AdapterChange:
    """Whether `written` differs from `serving` only by adapters added or updated, which a dynamic
    deployment stages while it runs; else the first reason it needs a restart."""
    before = {a.name: a for a in serving.adapters}
    after = {a.name: a for a in written.adapters}
    added = tuple(a for name, a in after.items() if name not in before)
    updated = tuple(
        a
        for name, a in after.items()
        if name in before and _source(written, a) != _source(serving, before[name])
    )
    if not (written.loads_adapters_dynamically and serving.loads_adapters_dynamically):
        if not added and not updated and _served_alike(serving, written):
            return AdapterChange()
        return AdapterChange(
            added, updated, "adapter_loading is not dynamic: vLLM loads adapters only at start"
        )
    if removed := [name for name in before if name not in after]:
        return AdapterChange(
            added,
            updated,
            f"adapter {removed[0]} was removed (a running server keeps what it has loaded)",
        )
    if not _served_alike(serving, written):
        return AdapterChange(added, updated, _first_difference(serving, written))
    if vllm_flags(_with_adapters(written, serving)) != vllm_flags(serving):
        # All else alike, the lock's commit of the base model is what changed its flags.
        return AdapterChange(
            added, updated, "the base model's locked commit changed: vLLM reads it at start"
        )
    if derived_lora_flags(serving) != derived_lora_flags(written):
        return AdapterChange(
            added,
            updated,
            "the new adapters change vLLM's LoRA limits (a higher rank than max-lora-rank "
            "holds): set `max-lora-rank` in vllm.args to the largest rank you will serve",
        )
    return AdapterChange(added, updated)


def _source(deployment: Deployment, adapter: Adapter) -> tuple:
    """What an adapter is served from: as written, and the commit the lock pins it to (which
    `deployer lock` or `adapter add` may write after the YAML)."""
    source = adapter.source
    return (source.repo, source.revision, source.path, locked_commit(deployment.lock, adapter.name))


def _with_adapters(deployment: Deployment, other: Deployment) -> Deployment:
    return dataclasses.replace(deployment, adapters=other.adapters)


def _comparable(deployment: Deployment) -> Deployment:
    """What vLLM's start reads, less the adapters: smoke expectations, accepted findings and the
    lock change nothing it runs (the lock's commits reach it as flags, compared separately)."""
    return dataclasses.replace(deployment, adapters=(), accept=(), smoke=None, lock=None)


def _served_alike(serving: Deployment, written: Deployment) -> bool:
    return _comparable(serving) == _comparable(written)


def _first_difference(serving: Deployment, written: Deployment) -> str:
    before, after = _comparable(serving), _comparable(written)
    for field in dataclasses.fields(Deployment):
        if field.compare and getattr(before, field.name) != getattr(after, field.name):
            return f"{field.name} changed: vLLM reads it at start"
    return "the deployment changed: vLLM reads it at start"


class FileWatch:
    """Says when any of `files` changed, by content (an editor's save that writes the same bytes
    changes nothing); a file that cannot be read counts as changed, and is read again next time."""

    def __init__(self, files: Sequence[Path]):
        self.files = tuple(files)
        self.seen = self._digests()

    def _digests(self) -> tuple[str | None, ...]:
        digests = []
        for file in self.files:
            try:
                digests.append(hashlib.sha256(file.read_bytes()).hexdigest())
            except OSError:
                digests.append(None)
        return tuple(digests)

    def changed(self) -> bool:
        now = self._digests()
        if now == self.seen:
            return False
        self.seen = now
        return True


class FollowYaml:
    """`serve --local` following its deployment's YAML (and the defaults merged under it): each
    saved edit is checked as `validate` checks it; for a dynamic deployment (`dynamic` given), new
    and updated adapters are rendered into the app and staged into the running server's folder;
    anything else is said, and the server keeps serving what it started with. `say` prints a line
    for the user."""

    def __init__(
        self,
        serving: Deployment,
        dynamic: DynamicAdapters | None,
        out: Path,
        templates: Path | None,
        url: str,
        pid: int,
        say,
    ):
        self.serving, self.dynamic, self.out, self.templates = serving, dynamic, out, templates
        self.url, self.pid, self.say = url, pid, say
        self.file = Path(serving.file)
        lock = folder_for(self.file.parent) / SOURCES_FILE  # pins the commits served
        self.watch = FileWatch([*(Path(source) for source in serving.sources), lock])

    def poll(self) -> None:
        """Look once; act on a change. Never raises for what the files say."""
        if not self.watch.changed():
            return
        try:
            self._follow()
        except (OSError, OutputProblem, TemplateProblem) as exc:
            # A stray file in the build folder, a project template that fails, a disk that is
            # full: said, and vLLM keeps serving what it serves.
            self.say(f"could not follow {self.file}: {exc}; still serving as before")

    def _follow(self) -> None:
        checked = check_paths([self.file])
        errors = [d for d in checked.diagnostics if d.is_error]
        written = next((d for d in checked.deployments if d.name == self.serving.name), None)
        if errors or written is None:
            self.say(f"{self.file} changed and does not validate; still serving it as before:")
            for problem in errors[:SHOWN_ERRORS]:
                self.say(f"  {printable(str(problem).splitlines()[0])}")
            if len(errors) > SHOWN_ERRORS:
                self.say(f"  and {len(errors) - SHOWN_ERRORS} more (`deployer validate`)")
            return
        change = adapter_change(self.serving, written)
        if change.restart:
            self.say(
                f"{self.file} changed: {change.restart}; stop this server (Ctrl-C) and run "
                f"`deployer serve {written.name} --local` again to serve it"
            )
            return
        if change.stages and self.dynamic is not None:
            try:
                self._stage(written, change)
            except LocalError as exc:
                self.say(f"could not stage the new adapters: {exc}; still serving as before")
                return
        self.serving = written

    def _stage(self, written: Deployment, change: AdapterChange) -> None:
        app = render(written, self.out, self.templates)
        write(app)
        try:
            sources = import_app(app.path).adapter_sources(local=True)
        except Exception as exc:  # a Hub adapter that cannot be downloaded, a folder gone
            raise LocalError(f"cannot fetch them: {printable(str(exc))}") from None
        names = [a.name for a in change.stages]
        assert self.dynamic is not None  # adapter_change stages only into a dynamic deployment
        stage_new_adapters(self.dynamic, {name: sources[name] for name in names})
        write_state(app.path.parent, self.url, self.pid, written.model_ids, self.dynamic.model)
        what = ", ".join(
            [f"{a.name} (new)" for a in change.added]
            + [f"{a.name} (updated)" for a in change.updated]
        )
        self.say(f"serving adapters {what} with no restart: vLLM loads each on its first request")
