"""The git commits a plan reads (`plan --against REF`, and the commits Modal recorded): crafted with
git's plumbing as a pull request can, they hold links leading out, trees naming one entry twice,
huge trees in a few kilobytes, attributes that grow files, and names that fill a disk. An export
keeps nothing leading out, refuses past its limits, and leaves nothing behind when stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import MINIMAL, REPO
from .helpers import LOCAL_MODEL_DEPLOYMENT, local_model


def test_a_deployments_folder_that_is_a_bare_repository_is_not_used_as_one(
    project, cli, monkeypatch
):
    # `git -C deployments` would take the committed HEAD, config, objects and refs for a
    # repository: run its smudge filter, and name its remote as the project's.
    import subprocess

    from ..conftest import git, git_commit

    marker = project.root.parent / f"{project.root.name}-smudged"
    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    project.deployments.rmdir()
    subprocess.run(["git", "init", "-q", "--bare", str(project.deployments)], check=True)
    shutil.rmtree(project.deployments / "hooks")
    inner = ["git", f"--git-dir={project.deployments}"]
    for key, value in [
        ("core.bare", "false"),
        ("core.worktree", "."),
        ("filter.x.smudge", f"sh -c 'echo ran >> {marker}; cat'"),
        ("remote.origin.url", "https://github.com/victim/other"),
    ]:
        subprocess.run([*inner, "config", key, value], check=True)
    work = project.root.parent / f"{project.root.name}-inner"
    work.mkdir()
    (work / ".gitattributes").write_text("* filter=x\n")
    (work / "x.yaml").write_text(MINIMAL)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run([*inner, f"--work-tree={work}", "add", "-A"], check=True, env=env)
    subprocess.run(
        [*inner, f"--work-tree={work}", "commit", "-q", "-m", "inner"], check=True, env=env
    )
    project.deployment("x")
    git_commit(project.root, "a deployments folder holding a bare repository")
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.root / "no-such.toml"))
    code, out, err = cli("plan")
    assert not marker.exists(), out + err
    assert "victim/other" not in out + err


def test_a_ref_export_keeps_no_link_leading_out_of_it(project, tmp_path_factory):
    # `a` leads out only through `y`: judged before `y` is placed, it would seem to stay inside.
    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    (project.root / "y").symlink_to(".")
    (project.root / "a").symlink_to(
        "y/" * 12 + "../" * 12 + "etc"
    )  # lexically dest/etc; really /etc
    (project.root / "ok").symlink_to("deployments")
    git_commit(project.root, "links")
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, "HEAD", dest)
    assert not os.path.lexists(dest / "a") and (dest / "ok").is_symlink()


def test_a_link_that_leads_out_once_another_is_dropped_is_dropped_too(project, tmp_path_factory):
    # l1 leads back in only through l0, which leads out: once l0 is gone, l1 leads out too.
    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    dest = tmp_path_factory.mktemp("export")
    (project.root / "l0").symlink_to("../" * 30 + "p/q/r")
    (project.root / "l1").symlink_to(f"l0/../../..{dest}/p/q/r")
    (project.root / "ok").symlink_to("deployments")
    git_commit(project.root, "a chain of links")
    CommitFiles(project.root, "HEAD", dest)
    assert (
        not os.path.lexists(dest / "l0")
        and not os.path.lexists(dest / "l1")
        and (dest / "ok").is_symlink()
    )


def _git_in(root: Path, *args: str, stdin: bytes = b"") -> str:
    import subprocess

    return (
        subprocess.run(
            ["git", "-C", str(root), *args], input=stdin, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


def _crafted_commit(project, entries: list[str]) -> str:
    """A commit of the tree entries given ("mode type id\tname") plus deployments/, made with
    git's plumbing as a pull request can: a tree no working copy was ever checked out from."""
    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    project.deployment("x", MINIMAL)
    git_commit(project.root, "base")
    tree = _git_in(
        project.root,
        "mktree",
        stdin=(
            "\n".join([_git_in(project.root, "ls-tree", "HEAD", "deployments"), *entries]) + "\n"
        ).encode(),
    )
    return _git_in(project.root, "commit-tree", tree, "-m", "crafted")


def test_links_to_one_large_object_are_never_read_into_memory(project, tmp_path_factory):
    # A link's target is a blob, perhaps a large one behind many links: its size is looked at
    # before it is read.
    import tracemalloc

    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git

    git(project.root, "init", "-q")
    blob = _git_in(project.root, "hash-object", "-w", "--stdin", stdin=b"x" * 20_000_000)
    commit = _crafted_commit(project, [f"120000 blob {blob}\tl{i}" for i in range(30)])
    dest = tmp_path_factory.mktemp("export")
    tracemalloc.start()
    CommitFiles(project.root, commit, dest)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000 and not os.path.lexists(dest / "l0")


def test_a_deep_tree_listed_many_times_costs_little_memory(project, tmp_path_factory):
    # Git stores one deep folder once however often a tree names it: keeping every prefix of
    # every path would cost memory per name and per level.
    import tracemalloc

    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git

    git(project.root, "init", "-q")
    deep = "a/" * 1_400 + "f"
    _git_in(
        project.root,
        "fast-import",
        "--quiet",
        stdin="commit refs/heads/deep\ncommitter t <t@example.com> 0 +0000\ndata 0\nM 100644 "
        f"inline {deep}\ndata 1\nx\n\n".encode(),
    )
    folder = _git_in(project.root, "rev-parse", "deep:a")
    commit = _crafted_commit(project, [f"040000 tree {folder}\tb{i}" for i in range(50)])
    dest = tmp_path_factory.mktemp("export")
    tracemalloc.start()
    files = CommitFiles(project.root, commit, dest)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000
    assert (
        not files.add([dest / "b7"]) and not (dest / "b7").exists()
    )  # deeper than any model folder: left out


def test_links_are_followed_no_further_than_the_kernel_would(project, tmp_path_factory):
    # Each link of a chain is a resolution: a path is followed through at most 40, as the kernel's.
    from deployer.deploy.commit_files import MAX_HOPS, CommitFiles, RefError

    from ..conftest import git

    git(project.root, "init", "-q")
    link = lambda target: _git_in(
        project.root, "hash-object", "-w", "--stdin", stdin=target.encode()
    )
    chain = [
        f"120000 blob {link(f'l{i + 1}' if i < 49 else 'deployments')}\tl{i}" for i in range(50)
    ]
    commit = _crafted_commit(project, chain)
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, commit, dest)
    assert not os.path.lexists(dest / "l0") and (dest / f"l{50 - MAX_HOPS}").is_symlink()
    assert (dest / "l49").resolve() == dest / "deployments"

    empty = _crafted_commit(project, [f"120000 blob {link('')}\tempty"])
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, empty, dest).add([dest])  # a link to nothing at all is left out
    assert (dest / "deployments" / "x.yaml").is_file() and not os.path.lexists(dest / "empty")

    blob = link("deployments")
    many = _crafted_commit(project, [f"120000 blob {blob}\tm{i}" for i in range(10_001)])
    with pytest.raises(RefError, match="holds 10,001 links"):
        CommitFiles(project.root, many, tmp_path_factory.mktemp("export"))


def test_a_tree_naming_one_entry_twice_cannot_place_a_link_leading_out(project, tmp_path_factory):
    # `x` as a folder (holding a link) and again as a link: placing x/l makes a real folder x, so
    # the link x is never placed, and m -> x/../../../etc must be judged by what is placed (where
    # it leads to /etc), not through the link x (where it would seem to stay inside).
    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git

    git(project.root, "init", "-q")
    blob = lambda content: _git_in(
        project.root, "hash-object", "-w", "--stdin", stdin=content.encode()
    )
    raw_tree = lambda entries: _git_in(
        project.root,
        "hash-object",
        "-t",
        "tree",
        "--literally",
        "-w",
        "--stdin",
        stdin=b"".join(
            mode + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries
        ),
    )
    folder = raw_tree([(b"120000", b"l", blob("anything"))])
    commit = _crafted_commit(project, [f"120000 blob {blob('x/../../../etc')}\tm"])
    tree = _git_in(project.root, "rev-parse", f"{commit}^{{tree}}")
    entries = []
    for line in _git_in(project.root, "ls-tree", tree).splitlines():
        meta, name = line.split("\t")
        mode, _, oid = meta.split()
        entries.append((mode.lstrip("0").encode(), name.encode(), oid))
    twice = raw_tree(entries + [(b"40000", b"x", folder), (b"120000", b"x", blob("y/z/w"))])
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, _git_in(project.root, "commit-tree", twice, "-m", "twice"), dest)
    links = [
        Path(folder) / name
        for folder, dirs, files in os.walk(dest)
        for name in dirs + files
        if os.path.islink(Path(folder) / name)
    ]
    assert links and all(Path(os.path.realpath(link)).is_relative_to(dest) for link in links), [
        (str(link), os.readlink(link)) for link in links
    ]


def test_a_commit_of_many_files_is_listed_as_a_stream_and_within_a_limit(
    project, tmp_path_factory, monkeypatch
):
    # 240 KB of objects can list 5 million files, and a plan reads a few folders: only links are
    # kept from the full listing, files are listed under the folders asked for, and past
    # MAX_ENTRIES names the commit is refused.
    import tracemalloc

    import deployer.deploy.commit_files as commit_files
    from deployer.deploy.commit_files import CommitFiles, RefError

    from ..conftest import git

    git(project.root, "init", "-q")
    empty = _git_in(project.root, "hash-object", "-w", "--stdin")
    files = _git_in(
        project.root,
        "mktree",
        stdin="".join(f"100644 blob {empty}\tf{i:03}\n" for i in range(200)).encode(),
    )
    data = _git_in(
        project.root,
        "mktree",
        stdin="".join(f"040000 tree {files}\td{i:03}\n" for i in range(200)).encode(),
    )
    commit = _crafted_commit(project, [f"040000 tree {data}\tdata"])
    dest = tmp_path_factory.mktemp("export")
    tracemalloc.start()
    export = CommitFiles(project.root, commit, dest)
    assert export.add([dest / "deployments"]) and (dest / "deployments" / "x.yaml").is_file()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8_000_000 and not (dest / "data").exists()
    monkeypatch.setattr(commit_files, "MAX_ENTRIES", 20_000)
    with pytest.raises(RefError, match="holds more than 20,000 files"):
        CommitFiles(project.root, commit, tmp_path_factory.mktemp("export"))


def test_a_commit_cannot_grow_its_files_through_its_own_attributes(project, tmp_path_factory):
    # export-subst in the commit's .gitattributes would make `git archive` expand every
    # $Format:%B$ to the commit message, megabytes each: files are read as stored.
    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    project.write(".gitattributes", "deployments/* export-subst\n")
    project.deployment("x", MINIMAL + "# $Format:%B$ $Format:%B$\n")
    git_commit(project.root, "A" * 10_000)
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, "HEAD", dest).add([dest / "deployments"])
    assert (dest / "deployments" / "x.yaml").read_text() == MINIMAL + "# $Format:%B$ $Format:%B$\n"


def test_files_sharing_one_object_take_its_room_once(project, tmp_path_factory):
    from deployer.deploy.commit_files import CommitFiles

    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    for i in range(3):
        project.write(f"models/m{i}/w.bin", "same weights")
    project.deployment("x", MINIMAL)
    git_commit(project.root, "three copies")
    dest = tmp_path_factory.mktemp("export")
    CommitFiles(project.root, "HEAD", dest).add([dest / "models"])
    assert {(dest / f"models/m{i}/w.bin").stat().st_ino for i in range(3)} == {
        (dest / "models/m0/w.bin").stat().st_ino
    }


def test_a_disk_filling_up_during_an_export_is_a_clean_error(
    project, tmp_path_factory, monkeypatch
):
    import errno

    import deployer.deploy.commit_files as commit_files
    from deployer.deploy.commit_files import CommitFiles, RefError

    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    project.deployment("x", MINIMAL)
    git_commit(project.root, "one file")

    class FullDisk:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(commit_files.os, "fdopen", FullDisk)  # stands in for a disk that is full
    dest = tmp_path_factory.mktemp("export")
    with pytest.raises(RefError, match="No space left on device"):
        CommitFiles(project.root, "HEAD", dest).add([dest / "deployments"])


def test_a_commit_whose_files_would_not_fit_on_the_disk_is_refused_before_writing(
    project, modal_world, cli, monkeypatch
):
    import shutil

    import deployer.deploy.commit_files as commit_files

    from ..conftest import git_commit

    # 64 MB of zeros: git stores it in 64 KB; a 1 GB file would be as cheap to commit, and as slow
    # to write out.
    model = local_model(project)
    with open(model / "model.safetensors", "wb") as handle:
        handle.truncate(64 << 20)
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "a model folder")
    real_usage = shutil.disk_usage
    # Stands in for a disk with 300 MB free: 44 MB to spare beyond the 256 MB an export keeps free.
    monkeypatch.setattr(
        commit_files.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=300 << 20)
    )
    code, out, err = cli("plan", "--against", "HEAD")
    assert code == 1 and "internal error" not in err
    assert (
        "take 67,1" in err
        and "more than the 46,137,344 the disk of" in err
        and "set TMPDIR to a disk with more room" in err
    )
    monkeypatch.setattr(
        commit_files.shutil, "disk_usage", lambda path: real_usage(path)._replace(free=400 << 20)
    )
    code, out, err = cli("plan", "--against", "HEAD")
    assert code == 0 and "= unchanged x" in out  # with room to spare, it is read


def _git_plumbing(root: Path, *args: str, stdin: str = "") -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit_of_deployments(root: Path, tree: str) -> str:
    top = _git_plumbing(root, "mktree", stdin=f"040000 tree {tree}\tdeployments\n")
    return _git_plumbing(root, "commit-tree", top, "-m", "a crafted deployments folder")


def _wide_tree(root: Path, fanout: int, depth: int) -> str:
    """A tree of fanout**depth empty files under long folder names, each tree stored once."""
    empty = _git_plumbing(root, "hash-object", "-w", "--stdin")
    tree = _git_plumbing(
        root, "mktree", stdin="".join(f"100644 blob {empty}\tf{i}.txt\n" for i in range(fanout))
    )
    for level in range(depth - 1):
        tree = _git_plumbing(
            root,
            "mktree",
            stdin="".join(f"040000 tree {tree}\t{'d' * 100}{level}-{i}\n" for i in range(fanout)),
        )
    return tree


def _comb(root: Path, teeth: int, depth: int) -> str:
    """`teeth` names for one chain of `depth` folders ending in one file: few files, many folders."""
    empty = _git_plumbing(root, "hash-object", "-w", "--stdin")
    tree = _git_plumbing(root, "mktree", stdin=f"100644 blob {empty}\tf.txt\n")
    for _ in range(depth):
        tree = _git_plumbing(root, "mktree", stdin=f"040000 tree {tree}\tc\n")
    return _git_plumbing(
        root, "mktree", stdin="".join(f"040000 tree {tree}\tt{i}\n" for i in range(teeth))
    )


def test_a_small_commit_listing_a_huge_tree_is_refused_quickly(project, cli):
    # A few kilobytes of git objects list 262,144 files: refused by counting, not by exporting.
    _git_plumbing(project.root, "init", "-q")
    commit = _commit_of_deployments(
        project.root, _wide_tree(project.root, fanout=8, depth=6)
    )  # 262,144 files
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "hold more than 100,000 files; the deployer exports at most that many" in err


def test_a_commit_of_few_files_in_very_many_folders_is_refused(project, cli):
    # 2,000 names for one 60-deep chain: 2,000 files, 122,000 folders (each a disk block).
    _git_plumbing(project.root, "init", "-q")
    commit = _commit_of_deployments(project.root, _comb(project.root, teeth=2000, depth=60))
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "lie in more than 100,000 folders; the deployer creates at most that many" in err


def test_a_commit_whose_names_alone_take_hundreds_of_megabytes_is_refused(project, cli):
    # 262,144 files 8 levels deep under 250-character folder names: 600 MB of names in a listing
    # (within the 2,000,000-name limit), and the first listing reads the whole commit (for its
    # links).
    _git_plumbing(project.root, "init", "-q")
    empty = _git_plumbing(project.root, "hash-object", "-w", "--stdin")
    tree = _git_plumbing(
        project.root, "mktree", stdin="".join(f"100644 blob {empty}\tf{i}\n" for i in range(4))
    )
    for level in range(8):
        tree = _git_plumbing(
            project.root,
            "mktree",
            stdin="".join(f"040000 tree {tree}\t{'n' * 250}{level}{i}\n" for i in range(4)),
        )
    commit = _commit_of_deployments(project.root, tree)
    code, out, err = cli("plan", "--against", commit)
    assert (
        code == 1 and "internal error" not in err and "lists more than 256 MB of file names" in err
    ), err


def test_links_of_a_commit_cannot_make_folders_past_the_limit(project, cli):
    # A link at the end of a chain of folders stored once, under many names: placing the links
    # makes the folders of every name's chain, and they count against the limit on folders too.
    # Here 2,000 names, a 60-deep chain.
    _git_plumbing(project.root, "init", "-q")
    target = _git_plumbing(project.root, "hash-object", "-w", "--stdin", stdin="x")
    tree = _git_plumbing(
        project.root, "mktree", stdin=f"120000 blob {target}\tl\n"
    )  # l -> x, inside
    for _ in range(60):
        tree = _git_plumbing(project.root, "mktree", stdin=f"040000 tree {tree}\td\n")
    top = _git_plumbing(
        project.root, "mktree", stdin="".join(f"040000 tree {tree}\tt{i}\n" for i in range(2000))
    )
    commit = _git_plumbing(
        project.root, "commit-tree", top, "-m", "links at the end of a shared chain"
    )
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "lie in more than 100,000 folders" in err


def test_a_file_behind_many_names_is_read_once_for_the_plan(project, modal_world, cli, monkeypatch):
    # One file under 601 names costs git nothing per name, but reading it per name would cost its
    # size each time; a ref's export hard-links one copy to every name the same.
    import deployer.deploy.desired as desired

    from ..conftest import git_commit

    model = local_model(project)
    (model / "big.bin").write_bytes(b"\0" * (1 << 20))
    for i in range(300):
        (model / f"l{i}").symlink_to("big.bin")
        os.link(model / "big.bin", model / f"h{i}")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "one file under 601 names")
    reads = []
    real_hash = desired._file_hash
    monkeypatch.setattr(
        desired, "_file_hash", lambda path, size: reads.append(path.name) or real_hash(path, size)
    )
    code, out, err = cli("plan", "--against", "HEAD")
    assert code == 0 and "= unchanged x" in out, out + err
    big = [name for name in reads if name == "big.bin" or name[0] in "lh" and name[1:].isdigit()]
    assert len(big) == 2  # once in the working tree, once in the ref's export (its own copy)


def test_a_file_deep_in_a_model_folder_is_in_a_refs_export_too(project, modal_world, cli):
    # Validation allows 100 levels below the model folder: an export counting them from the
    # repository's root would lack the file, and the plan would see the folder as changed.
    from ..conftest import git_commit

    model = local_model(project)
    deep = model.joinpath(*["d"] * 99)
    deep.mkdir(parents=True)
    (deep / "w.bin").write_text("weights")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "a deep file")
    code, out, err = cli("plan", "--against", "HEAD")
    assert code == 0 and "= unchanged x" in out, out + err


# `python -m deployer ARGS...` that stops for good where it would hash a file of a ref's export,
# first writing the file named by its first argument: a signal sent once that file exists finds
# the plan exporting, however fast or slow the machine is.
HELD_WHILE_EXPORTING = """\
import pathlib, runpy, sys, time
import deployer.deploy.desired as desired

held, real_hash = pathlib.Path(sys.argv[1]), desired._file_hash

def hash_or_hold(path, size):
    if any(part.startswith("deployer-ref-") for part in pathlib.Path(path).parts):
        held.write_text("exporting")
        while True:
            time.sleep(1)
    return real_hash(path, size)

desired._file_hash = hash_or_hold
sys.argv = ["deployer", *sys.argv[2:]]
runpy.run_module("deployer", run_name="__main__")
"""


def test_a_plan_stopped_by_sigterm_removes_the_refs_export(project, tmp_path_factory):
    # A CI timeout or cancel sends SIGTERM: the export of a ref (gigabytes, perhaps) must not be
    # left behind in TMPDIR.
    from ..conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    model = local_model(project)
    (model / "model.safetensors").write_bytes(b"\0" * 1024)
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "a model folder")
    temporary = tmp_path_factory.mktemp("tmpdir")
    held = tmp_path_factory.mktemp("held") / "held"
    env = {**os.environ, "TMPDIR": str(temporary), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("MODAL_TOKEN_ID", None)
    process = subprocess.Popen(
        [sys.executable, "-c", HELD_WHILE_EXPORTING, str(held), "plan", "--against", "HEAD"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # only against a hang: the plan holds until signalled
    while not held.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.exists(), "the plan never reached the ref's export"
    assert list(temporary.glob("deployer-ref-*/models/m/model.safetensors"))
    process.terminate()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "deployer: interrupted" in err, err
    assert list(temporary.iterdir()) == []
