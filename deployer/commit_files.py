"""The files of a git commit, written into a folder on demand: what `plan --against REF` and the
plan's history ("what was this deployed version rendered from?") read of a commit.

Only what a plan reads is written: every link (so paths resolve as they did in the commit), the
deployments folder and the templates beside it, then the local model and adapter folders the
deployments name. A commit can hold anything else (datasets, a 2.5 GB blob): exporting all of it
through memory took 5 GB for one plan. Files arrive as a tar stream, one at a time.
"""

from __future__ import annotations

import bisect
import os
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from .desired import git_command
from .paths import real, within

GIT_SECONDS = 600
MAX_LINK_BYTES = 4096  # PATH_MAX: no longer link can be followed
MAX_ARGS_CHARS = 100_000  # pathspecs per git process, well inside the kernel's argument limit
MAX_LINK_ROUNDS = 3
LINK_MODE = b"120000"
FILE_MODES = (b"100644", b"100755")


class RefError(Exception):
    """A git ref that cannot be read; the message is safe to print."""


class CommitFiles:
    """One commit's files under `dest`: its links at once, the rest as `add` asks for them."""

    def __init__(self, repo: Path, ref: str, dest: Path):
        command = git_command(repo)
        if command is None:
            raise RefError(f"{repo} is not inside a git repository")
        # Paths are the commit's own names: `*` or `:(glob)` in one must not widen what is read.
        self._git = [*command, "--literal-pathspecs"]
        self.dest = dest
        self.commit = self._text("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        if not self.commit:
            raise RefError(f"{ref!r} is not a commit in {repo} (fetch it first, e.g. `git fetch origin main`)")
        self._files: set[str] = set()
        self._links: list[str] = []  # sorted, to find those under a folder
        self._folders: set[str] = set()
        self._asked: set[str] = set()
        link_ids = self._list()
        self._write_links(link_ids)

    def add(self, paths: Iterable[Path]) -> bool:
        """Write the files at or under `paths` (absolute, inside `dest`; links followed as the
        commit's links lead), and whatever their links point at. Whether anything new was written."""
        wanted, queue = [], [self._relative(Path(p)) for p in paths]
        while queue:
            relative = queue.pop()
            if relative is None or self._already_asked(relative):
                continue
            self._asked.add(relative)
            if relative in self._folders or relative in self._files:
                wanted.append(relative or ".")
                queue += [self._relative(self.dest / link) for link in _under(self._links, relative)]
        if wanted:
            for chunk in _chunks(wanted):
                self._extract(chunk)
        return bool(wanted)

    # -- reading the commit ----------------------------------------------------------------------

    def _text(self, *args: str) -> str | None:
        try:
            done = subprocess.run([*self._git, *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    def _list(self) -> list[tuple[str, str]]:
        """Fill the commit's file, link and folder names; return (link path, blob id) pairs."""
        try:
            done = subprocess.run([*self._git, "ls-tree", "-r", "-z", "--full-tree", self.commit], capture_output=True, timeout=GIT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RefError(f"cannot list {self.commit[:7]}: {exc}") from None
        if done.returncode != 0:
            raise RefError(f"cannot list {self.commit[:7]}: {done.stderr.decode(errors='replace').strip()}")
        links = []
        for record in done.stdout.split(b"\0"):
            meta, _, name = record.partition(b"\t")
            mode, _, rest = meta.partition(b" ")
            path = os.fsdecode(name)
            if not _plain_name(path):
                continue
            if mode == LINK_MODE:
                self._links.append(path)
                links.append((path, rest.rpartition(b" ")[2].decode()))
            elif mode in FILE_MODES:
                self._files.add(path)
            else:
                continue  # a submodule: its files are not in this commit
            parts = path.split("/")
            self._folders.update("/".join(parts[:i]) for i in range(len(parts)))
        self._links.sort()
        return links

    def _write_links(self, links: list[tuple[str, str]]) -> None:
        """Every link of the commit, so that a path resolves here as it did there; then any that
        leads out of `dest`, judged once all are in place (a link through another link that
        leads out looks harmless on its own), is removed."""
        if not links:
            return
        try:
            done = subprocess.run([*self._git, "cat-file", "--batch"], input="".join(f"{blob}\n" for _, blob in links).encode(), capture_output=True, timeout=GIT_SECONDS)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RefError(f"cannot read the links of {self.commit[:7]}: {exc}") from None
        output, position = done.stdout, 0
        for path, _ in links:
            end = output.find(b"\n", position)
            header = output[position:end].split(b" ")
            if end < 0 or len(header) != 3:
                break  # "<id> missing": nothing follows
            size = int(header[2])
            target, position = output[end + 1 : end + 1 + size], end + 2 + size
            if size <= MAX_LINK_BYTES and b"\0" not in target:
                self._place_link(path, os.fsdecode(target))
        self._drop_links_out()

    def _place_link(self, path: str, target: str) -> None:
        entry = self.dest / path
        if self._through_link(entry.parent):
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(target, entry)
        except OSError:
            pass  # the name is taken (a malformed tree naming it twice): first one wins

    def _drop_links_out(self) -> None:
        # Removing one link can send another through the place it held: judge them again. A
        # commit whose links keep changing where each other lead gets none of them (each round
        # follows every link; a few thousand crafted links must not make that quadratic).
        for _ in range(MAX_LINK_ROUNDS):
            out = [entry for entry in (self.dest / path for path in self._links) if os.path.islink(entry) and not within(entry, self.dest)]
            if not out:
                return
            for entry in out:
                os.unlink(entry)
        for entry in (self.dest / path for path in self._links):
            if os.path.islink(entry):
                os.unlink(entry)

    def _extract(self, pathspecs: list[str]) -> None:
        """`git archive` of `pathspecs`, read as a stream: one file in memory at a time."""
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen([*self._git, "archive", "--format=tar", self.commit, "--", *pathspecs], stdout=subprocess.PIPE, stderr=errors)
            except OSError as exc:
                raise RefError(f"cannot read {self.commit[:7]}: {exc}") from None
            timer = threading.Timer(GIT_SECONDS, process.kill)
            timer.start()
            try:
                with tarfile.open(fileobj=process.stdout, mode="r|") as archive:
                    archive.extractall(self.dest, members=self._plain_members(archive), filter="data")
            except (tarfile.TarError, OSError) as exc:
                process.kill()
                raise RefError(f"cannot read {self.commit[:7]}: {exc}") from None
            finally:
                timer.cancel()
                process.stdout.close()
                code = process.wait()
            if code != 0:
                errors.seek(0)
                raise RefError(f"cannot read {self.commit[:7]}: {errors.read(2000).decode(errors='replace').strip() or f'git archive ended with {code}'}")

    def _plain_members(self, archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        # Links are already written (and judged); a file is never written through one.
        for member in archive:
            if (member.isfile() or member.isdir()) and _plain_name(member.name) and not self._through_link(self.dest / member.name):
                yield member

    # -- names -----------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str | None:
        """`path` with the commit's links followed, relative to `dest`; None if it leads out."""
        where, top = real(path), real(self.dest)
        if where is None or top is None or not where.is_relative_to(top):
            return None
        relative = where.relative_to(top).as_posix()
        return "" if relative == "." else relative

    def _already_asked(self, relative: str) -> bool:
        parts = relative.split("/") if relative else []
        return any("/".join(parts[:i]) in self._asked for i in range(len(parts) + 1))

    def _through_link(self, path: Path) -> bool:
        """Whether any folder or file on the way from `dest` to `path` is a link."""
        current = self.dest
        for part in path.relative_to(self.dest).parts:
            current = current / part
            if os.path.islink(current):
                return True
        return False


def _plain_name(path: str) -> bool:
    # git itself refuses to check such names out: never write them.
    parts = path.split("/")
    return bool(path) and all(part not in ("", ".", "..") and part.lower() != ".git" for part in parts)


def _under(names: list[str], folder: str) -> list[str]:
    """Those of the sorted `names` equal to or under `folder` ("" is the whole commit)."""
    if not folder:
        return list(names)
    index = bisect.bisect_left(names, folder)
    found = [folder] if index < len(names) and names[index] == folder else []
    prefix = folder + "/"
    index = bisect.bisect_left(names, prefix)  # names under it sort together, right after prefix
    while index < len(names) and names[index].startswith(prefix):
        found.append(names[index])
        index += 1
    return found


def _chunks(args: list[str]) -> Iterator[list[str]]:
    chunk, size = [], 0
    for arg in args:
        if chunk and size + len(arg) > MAX_ARGS_CHARS:
            yield chunk
            chunk, size = [], 0
        chunk.append(arg)
        size += len(arg) + 1
    if chunk:
        yield chunk


def ignored_files(root: Path, folders: Iterable[Path]) -> list[Path]:
    """Files under `folders` (relative to the repository `root`) that git ignores: weights often
    are. One git process per hundred kilobytes of names, not one per folder."""
    command, found = git_command(root), []
    if command is None:
        return []
    for chunk in _chunks(sorted({f.as_posix() for f in folders})):
        try:
            done = subprocess.run([*command, "--literal-pathspecs", "ls-files", "--others", "--ignored", "--exclude-standard", "-z", "--", *chunk], capture_output=True, timeout=GIT_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            found += [Path(os.fsdecode(p)) for p in done.stdout.split(b"\0") if p]
    return found
