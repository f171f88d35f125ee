"""The files of a git commit, written into a folder on demand: what `plan --against REF` and the
plan's history ("what was this deployed version rendered from?") read of a commit.

Only what a plan reads is written: the commit's links (so paths resolve as they did in the
commit), then the deployments folder and the templates beside it, then the local model and
adapter folders the deployments name. A commit can hold anything else (datasets, a 2.5 GB blob),
which a plan has no reason to write out or hold in memory.

Files are written as git stores them, streamed from `git cat-file --batch`, with no filter,
attribute or line-ending conversion applied: the commit's own .gitattributes must not apply (with
`export-subst`, `git archive` lets a 3 MB commit expand one file to 2.8 GB). Each stored
object is written once (the other paths holding it are hard links), so an export never takes
more room than a checkout of the same commit.
"""

from __future__ import annotations

import bisect
import os
import posixpath
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from deployer.core.limits import (
    FOLDER_BYTES,
    GIT_SECONDS,
    IGNORED_SECONDS,
    KEEP_FREE,
    MAX_ARGS_CHARS,
    MAX_COMMIT_PATH_CHARS,
    MAX_COMMIT_PATH_PARTS,
    MAX_ENTRIES,
    MAX_EXPORT_FILES,
    MAX_EXPORT_FOLDERS,
    MAX_HOPS,
    MAX_LINK_BYTES,
    MAX_LINK_ROUNDS,
    MAX_LINKS,
    MAX_LISTED_BYTES,
    MAX_RECORD_BYTES,
    MAX_STEPS,
)
from deployer.deploy.git import git_command, git_output

LINK_MODE = "120000"
FILE_MODES = ("100644", "100755")
CHUNK = 1 << 20  # bytes of an object held in memory at a time


class RefError(Exception):
    """A git ref that cannot be read; the message is safe to print."""


class CommitFiles:
    """One commit's files under `dest`: its links at once, the rest as `add` asks for them."""

    def __init__(self, repo: Path, ref: str, dest: Path):
        command = git_command(repo)
        if command is None:
            raise RefError(f"{repo} is not inside a git repository")
        # Names are the commit's own: `*` or `:(glob)` in one must not widen what is listed.
        self._git = [*command, "--literal-pathspecs"]
        self.dest = Path(os.path.realpath(dest))
        self._spellings = {str(self.dest), os.path.abspath(dest)}  # /tmp is a link on macOS
        self.commit = git_output(
            [*self._git, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]
        )
        if not self.commit:
            raise RefError(
                f"{ref!r} is not a commit in {repo} (fetch it first, e.g. `git fetch origin main`)"
            )
        self._listed = 0  # names read from git so far, against MAX_ENTRIES
        self._listed_bytes = 0  # and their bytes, against MAX_LISTED_BYTES
        self._files = 0  # files asked for so far, against MAX_EXPORT_FILES
        self._folders: set[str] = set()  # folders they need, against MAX_EXPORT_FOLDERS
        self._asked: set[str] = set()
        self._place_links(self._all_links())
        # Like a checkout, the root holds a .git: the checks refuse a source folder holding one
        # (it would upload the repository) here as they do in the working tree.
        (self.dest / ".git").mkdir(exist_ok=True)

    def add(self, paths: Iterable[Path]) -> bool:
        """Write the files at or under `paths` (inside `dest`; links followed as the commit's
        links lead), and whatever the links among them point at. Whether anything was written.
        Only the folders asked for are listed: a commit of millions of files costs no more."""
        wanted: dict[str, tuple[str, str]] = {}
        sizes: dict[str, int] = {}  # by object: each is written once
        folders_before = len(self._folders)

        def note(mode: str, blob: str, size: str, path: str) -> None:
            if mode in FILE_MODES and path not in wanted and not os.path.lexists(self.dest / path):
                wanted[path] = (mode, blob)
                sizes[blob] = int(size) if size.isdigit() else 0
                self._count(path)

        queue = [self._relative(Path(p)) for p in paths]
        while queue:
            folders = []
            for relative in queue:
                if relative is not None and not self._already_asked(relative):
                    self._asked.add(relative)
                    folders.append(relative)
            queue = [
                self._resolve(link)
                for folder in folders
                for link in _under(self._link_names, folder)
            ]
            for chunk in _chunks([folder or "." for folder in folders]):
                self._each_entry(chunk, note)
        self._make_room(sum(sizes.values()) + (len(self._folders) - folders_before) * FOLDER_BYTES)
        self._write(wanted)
        return bool(wanted)

    def _count(self, path: str) -> None:
        """Count a file to write and the folders above it, refusing an export past the limits."""
        self._files += 1
        if self._files > MAX_EXPORT_FILES:
            raise RefError(
                f"the folders to read from {self.commit[:7]} hold more than "
                f"{MAX_EXPORT_FILES:,} files; the deployer exports at most that many "
                "(deployments, templates and the model and adapter folders they name)"
            )
        self._count_folders(path)

    def _count_folders(self, path: str) -> None:
        """Count the folders above `path` not counted yet, refusing an export past the limit."""
        folder = posixpath.dirname(path)
        while folder and folder not in self._folders:
            self._folders.add(folder)
            folder = posixpath.dirname(folder)
        if len(self._folders) > MAX_EXPORT_FOLDERS:
            raise RefError(
                f"the files to read from {self.commit[:7]} lie in more than "
                f"{MAX_EXPORT_FOLDERS:,} folders; the deployer creates at most that many "
                "for an export"
            )

    def _make_room(self, needed: int) -> None:
        """Refuse up front what would not fit: a commit can hold a file that git stores in a few
        kilobytes and that takes gigabytes (and minutes) to write out, filling the disk for
        every other program before the write fails."""
        free = shutil.disk_usage(self.dest).free
        if needed > free - KEEP_FREE:
            raise RefError(
                f"the files to read from {self.commit[:7]} take {needed:,} bytes, more "
                f"than the {max(free - KEEP_FREE, 0):,} the disk of {self.dest.parent} can "
                f"spare (it keeps {KEEP_FREE:,} free); set TMPDIR to a disk with more "
                "room, or compare with another ref"
            )

    # -- the commit's names --------------------------------------------------------------------

    def _all_links(self) -> list[tuple[str, str]]:
        """(path, object id) of every link of at most MAX_LINK_BYTES in the commit, the whole
        listing streamed (nothing else of it kept)."""
        links: list[tuple[str, str]] = []

        def note(mode: str, blob: str, size: str, path: str) -> None:
            if mode == LINK_MODE and size.isdigit() and int(size) <= MAX_LINK_BYTES:
                links.append((path, blob))

        self._each_entry([], note)
        if len(links) > MAX_LINKS:
            raise RefError(
                f"{self.commit[:7]} holds {len(links):,} links; the deployer follows at "
                f"most {MAX_LINKS:,}"
            )
        return links

    def _each_entry(
        self, pathspecs: list[str], take: Callable[[str, str, str, str], object]
    ) -> None:
        """`take(mode, object id, size, path)` for each entry `git ls-tree -r` lists under
        `pathspecs` (everything when none), read as a stream."""
        with tempfile.TemporaryFile() as errors:
            try:
                process = subprocess.Popen(
                    [
                        *self._git,
                        "ls-tree",
                        "-r",
                        "-z",
                        "--long",
                        "--full-tree",
                        self.commit,
                        "--",
                        *pathspecs,
                    ],
                    stdout=subprocess.PIPE,
                    stderr=errors,
                )
            except OSError as exc:
                raise RefError(f"cannot list {self.commit[:7]}: {exc}") from None
            timer = threading.Timer(GIT_SECONDS, process.kill)
            timer.start()
            try:
                rest = b""
                while chunk := process.stdout.read(CHUNK):
                    self._listed_bytes += len(chunk)
                    if self._listed_bytes > MAX_LISTED_BYTES:
                        raise RefError(
                            f"{self.commit[:7]} lists more than {MAX_LISTED_BYTES >> 20} "
                            "MB of file names; the deployer reads at most that much"
                        )
                    *records, rest = (rest + chunk).split(b"\0")
                    if len(rest) > MAX_RECORD_BYTES:
                        raise RefError(
                            f"{self.commit[:7]} holds a name longer than any file system allows"
                        )
                    for record in records:
                        self._listed += 1
                        if self._listed > MAX_ENTRIES:
                            raise RefError(
                                f"{self.commit[:7]} holds more than {MAX_ENTRIES:,} files; "
                                "the deployer reads at most that many"
                            )
                        meta, _, name = record.partition(b"\t")
                        fields = meta.decode("ascii", errors="replace").split()
                        path = os.fsdecode(name)
                        if len(fields) == 4 and _plain_name(
                            path
                        ):  # else a submodule, or a name git would not check out
                            take(fields[0], fields[2], fields[3], path)
                code = process.wait()
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                timer.cancel()
            if code != 0:  # (killed by the timer too)
                errors.seek(0)
                raise RefError(
                    f"cannot list {self.commit[:7]}: "
                    f"{errors.read(2000).decode(errors='replace').strip() or f'git ended with {code}'}"
                )

    def _place_links(self, links: list[tuple[str, str]]) -> None:
        """Every link of the commit that leads somewhere inside it, so that a path resolves here
        as it did there; one that leads out, or through one that does, is left out. The table
        that judges them is made of the links actually placed: a malformed tree naming `x` twice
        (a folder, then a link) must not have a link judged through an `x` that is not there."""
        found: dict[str, bytes] = {}
        self._cat(
            list(dict.fromkeys(blob for _, blob in links)),
            lambda blob, chunks: found.setdefault(blob, b"".join(chunks)),
        )
        table: dict[str, str] = {}
        for path, blob in links:
            target = os.fsdecode(found.get(blob, b""))
            if target and "\0" not in target:
                table.setdefault(path, target)  # a name given twice: the first one, everywhere
        self._use(table)
        leading_inside = [path for path in sorted(table) if self._resolve(path) is not None]
        for path in leading_inside:  # a chain of folders stored once can sit under 10,000 names
            self._count_folders(path)
        self._make_room(len(self._folders) * FOLDER_BYTES)
        placed = {}
        for path in leading_inside:
            if make_parents(self.dest, self.dest / path):
                try:
                    os.symlink(table[path], self.dest / path)
                except OSError:
                    continue  # the name is taken
                placed[path] = table[path]
        for _ in range(MAX_LINK_ROUNDS):
            self._use(placed)
            out = [path for path in placed if self._resolve(path) is None]
            if not out:
                return
            for path in out:
                os.unlink(self.dest / path)
                del placed[path]
        for path in placed:  # still changing where each other lead: none of them
            os.unlink(self.dest / path)
        self._use({})

    def _use(self, links: dict[str, str]) -> None:
        """Resolve paths through `links` (path → target) from now on."""
        self._targets = dict(links)
        self._link_names = sorted(links)
        self._links: dict = {}
        for path, target in links.items():
            node = self._links
            for part in path.split("/"):
                node = node.setdefault(part, {})
            node[""] = target  # "" is no name: it marks the link
        self._resolved: dict[str, str | None] = {}

    def _resolve(self, relative: str) -> str | None:
        """Where `relative` leads with the commit's links followed, relative to the commit's root;
        None when any step leaves the commit (an absolute link, `..` above the root) or the way
        is too long (more than MAX_HOPS links or MAX_STEPS names: the kernel would give up too).
        Remembered: a link under many folders asked for is resolved once."""
        if relative not in self._resolved:
            self._resolved[relative] = self._follow(relative)
        return self._resolved[relative]

    def _follow(self, relative: str) -> str | None:
        pending = relative.split("/")[::-1]
        names: list[str] = []
        nodes: list[dict | None] = [self._links]
        hops = steps = 0
        while pending:
            part = pending.pop()
            steps += 1
            if steps > MAX_STEPS:
                return None
            if part in ("", "."):
                continue
            if part == "..":
                if not names:
                    return None
                names.pop()
                nodes.pop()
                continue
            node = nodes[-1].get(part) if nodes[-1] is not None else None
            if node is not None and "" in node:
                hops += 1
                if hops > MAX_HOPS or node[""].startswith("/"):
                    return None
                pending.extend(node[""].split("/")[::-1])
                continue
            names.append(part)
            nodes.append(node)
        return "/".join(names)

    def _relative(self, path: Path) -> str | None:
        """`path` (absolute, or relative to the working folder) inside `dest`, resolved."""
        for spelling in self._spellings:
            relative = os.path.relpath(os.path.abspath(path), spelling)
            if relative == ".":
                return ""
            if relative.split(os.sep)[0] != "..":
                return self._resolve(relative.replace(os.sep, "/"))
        return None

    def _already_asked(self, relative: str) -> bool:
        parts = relative.split("/") if relative else []
        return any("/".join(parts[:i]) in self._asked for i in range(len(parts) + 1))

    # -- reading git ---------------------------------------------------------------------------

    def _write(self, files: dict[str, tuple[str, str]]) -> None:
        """Each file once per stored object; the other paths holding the same object link to it."""
        by_blob: dict[str, list[str]] = {}
        for path, (_, blob) in files.items():
            if make_parents(self.dest, self.dest / path):  # never through a link
                by_blob.setdefault(blob, []).append(path)

        def take(blob: str, chunks: Iterator[bytes]) -> None:
            first, *others = by_blob[blob]
            if not _write_new(self.dest / first, chunks, files[first][0] == "100755"):
                return
            for other in others:
                try:
                    os.link(self.dest / first, self.dest / other)
                except OSError:
                    continue

        self._cat(list(by_blob), take)

    def _cat(self, blobs: list[str], take: Callable[[str, Iterator[bytes]], object]) -> None:
        """Hand each object's contents to `take` as a stream of chunks, from one
        `git cat-file --batch`: one chunk in memory at a time, whatever the object's size."""
        if not blobs:
            return
        try:
            process = subprocess.Popen(
                [*self._git, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise RefError(f"cannot read {self.commit[:7]}: {exc}") from None
        feeder = threading.Thread(target=_feed, args=(process.stdin, blobs), daemon=True)
        feeder.start()
        timer = threading.Timer(GIT_SECONDS, process.kill)
        timer.start()
        try:
            for blob in blobs:
                header = process.stdout.readline(200).split()
                if len(header) != 3 or not header[2].isdigit():
                    raise RefError(f"cannot read object {blob[:12]} of {self.commit[:7]}")
                chunks = _chunks_of(process.stdout, int(header[2]))
                take(blob, chunks)
                for _ in chunks:  # what `take` left unread
                    pass
                process.stdout.read(1)  # the newline after each object
        finally:
            timer.cancel()
            process.kill()
            process.wait()
            feeder.join()


def _feed(stdin, blobs: list[str]) -> None:
    # A thread of its own: git answers while we ask, and both pipes have a limit.
    try:
        for blob in blobs:
            stdin.write(f"{blob}\n".encode())
        stdin.close()
    except (OSError, ValueError):
        pass  # git stopped early (killed, or it failed): the reader reports it


def _chunks_of(stream, size: int) -> Iterator[bytes]:
    while size > 0:
        chunk = stream.read(min(CHUNK, size))
        if not chunk:
            raise RefError("git stopped in the middle of an object")
        size -= len(chunk)
        yield chunk


def _write_new(path: Path, chunks: Iterator[bytes], executable: bool) -> bool:
    """Create `path` (never over anything, never through a link at its end) from `chunks`."""
    try:
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
            0o755 if executable else 0o644,
        )
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
    except OSError as exc:  # a full disk, most likely: the export stops, cleanly
        raise RefError(
            f"cannot write {path.name} of the exported commit: {exc.strerror or exc}"
        ) from None
    return True


def make_parents(top: Path, path: Path) -> bool:
    """Create the folders from `top` down to `path`'s parent, one at a time (a tree 1,400 deep
    is deeper than os.makedirs can recurse); False if one is a link or not a folder."""
    current = top
    for part in path.relative_to(top).parts[:-1]:
        current = current / part
        try:
            os.mkdir(current)
        except FileExistsError:
            if os.path.islink(current) or not os.path.isdir(current):
                return False
        except OSError:
            return False
    return True


def _plain_name(path: str) -> bool:
    # git itself refuses to check such names out: never write them.
    parts = path.split("/")
    return (
        0 < len(path) <= MAX_COMMIT_PATH_CHARS
        and len(parts) <= MAX_COMMIT_PATH_PARTS
        and all(part not in ("", ".", "..") and part.lower() != ".git" for part in parts)
    )


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


def ignored_files(root: Path, folders: Iterable[Path], deadline: float | None = None) -> list[Path]:
    """Files under `folders` (relative to the repository `root`) that git ignores: weights often
    are. One git process per hundred kilobytes of names, not one per folder, all within
    IGNORED_SECONDS: git's wildcard matching slows down steeply with the `*`s of a pattern, and a
    committed `.gitignore` line such as `*a*a*a*a*a*b` keeps it busy for minutes per folder."""
    command, found = git_command(root), []
    if command is None:
        return []
    deadline = deadline or time.monotonic() + IGNORED_SECONDS  # (a plan's refs share one)
    for chunk in _chunks(sorted({f.as_posix() for f in folders})):
        try:
            done = subprocess.run(
                [
                    *command,
                    "--literal-pathspecs",
                    "ls-files",
                    "--others",
                    "--ignored",
                    "--exclude-standard",
                    "-z",
                    "--",
                    *chunk,
                ],
                capture_output=True,
                timeout=max(deadline - time.monotonic(), 0.1),
            )
        except subprocess.TimeoutExpired:
            raise RefError(
                f"git took more than {IGNORED_SECONDS} s to list the git-ignored files of "
                "the model and adapter folders; .gitignore patterns with many wildcards "
                "(`*a*a*a*b`) slow its matching down steeply: simplify them"
            ) from None
        except OSError as exc:
            raise RefError(
                f"cannot list the git-ignored files of the model and adapter folders: {exc}"
            ) from None
        if (
            done.returncode != 0
        ):  # the ref would seem to lack every ignored file: a plan full of changes that are not
            raise RefError(
                "cannot list the git-ignored files of the model and adapter folders: "
                f"{done.stderr.decode(errors='replace').strip()[:2000] or f'git ended with {done.returncode}'}"
            )
        found += [Path(os.fsdecode(p)) for p in done.stdout.split(b"\0") if p]
    return found
