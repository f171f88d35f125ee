"""The output folder (build/ or --out) and what runs from it: links in its path or in place of its
files, files render did not write (a planted shlex.py, a bytecode cache), the apply lock, and the
working folders of the Modal CLI and of the URL lookup, where a planted modal.py would run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def test_render_never_writes_through_a_linked_app_folder(project, cli, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    project.deployment("a")
    (project.root / "build").mkdir()
    (project.root / "build" / "a").symlink_to(outside)
    code, _, err = cli("render")
    assert code == 1 and "must be a plain folder" in err and not (outside / "app.py").exists()
    (project.root / "build" / "a").unlink()
    assert (
        cli("render")[0] == 0
        and (project.root / "build" / "a" / "app.py").stat().st_mode & 0o777 == 0o644
    )


def test_render_never_writes_through_a_linked_output_folder(project, cli, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside-build")
    project.deployment("a")
    (project.root / "build").symlink_to(outside)
    code, _, err = cli("render")
    assert code == 1 and "is a link to" in err and "--out" in err and list(outside.iterdir()) == []


def test_a_link_anywhere_below_the_working_folder_in_out_is_refused(project, cli, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    project.deployment("a")
    (project.root / "out").symlink_to(elsewhere)
    code, _, err = cli("render", "--out", "out/apps")
    assert code == 1 and "out is a link to" in err and list(elsewhere.iterdir()) == []
    from deployer.deploy.apply import LockError, apply_lock

    with pytest.raises(LockError, match="out is a link to"):
        with apply_lock(Path("out/apps")):
            pass
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("target", ["/dev/zero", "/proc/kmsg", "outside"])
def test_committed_files_under_build_are_never_read_through_links(
    project, cli, monkeypatch, target
):
    outside = project.root.parent / f"{project.root.name}-outside"
    outside.write_text("precious SENTINEL\n")
    project.deployment("a")
    (project.root / "build" / "a").mkdir(parents=True)
    for name in ("app.py", "local-server.json"):
        (project.root / "build" / "a" / name).symlink_to(outside if target == "outside" else target)
    monkeypatch.setenv("VLLM_API_KEY", "sk-SENTINEL")
    # Read, /dev/zero would fill memory and /proc/kmsg would block.
    code, out, err = cli("smoke", "a", "--timeout", "1")
    assert code == 2 and "no known URL for 'a'" in err
    code, out, err = cli("render", "--check")
    assert code == 1 and "out of date" in out and "SENTINEL" not in out + err
    code, out, err = cli("render")
    if target == "/dev/zero":
        assert code == 1 and "something else is in the way" in err
    else:  # the link (to a file) is replaced by the app; what it pointed at is untouched
        assert code == 0 and not (project.root / "build" / "a" / "app.py").is_symlink()
        assert outside.read_text() == "precious SENTINEL\n"


def test_a_committed_app_that_is_not_utf8_is_just_out_of_date(project, cli):
    project.deployment("a")
    project.write("build/a/app.py", "")
    (project.root / "build" / "a" / "app.py").write_bytes(b"\xff\xfe broken")
    code, out, err = cli("render", "--check")
    assert code == 1 and "out of date" in out and "internal error" not in err


def test_an_app_folder_holding_files_render_did_not_write_is_refused(project, cli):
    # `modal deploy build/a/app.py` puts build/a first on the import path: shlex.py would run.
    project.deployment("a")
    project.write("build/a/shlex.py", "raise SystemExit('planted')\n")
    code, _, err = cli("render")
    assert code == 1 and "holds shlex.py, which the deployer did not write" in err
    (project.root / "build" / "a" / "shlex.py").unlink()
    assert cli("render")[0] == 0


def test_a_committed_bytecode_cache_never_runs_instead_of_the_app(project, cli):
    import importlib.util
    import marshal

    from deployer.local.server import import_app

    project.deployment("a")
    assert cli("render")[0] == 0
    app_py = project.root / "build" / "a" / "app.py"
    planted = compile(
        "import pathlib; pathlib.Path('pyc-ran').write_text('x')\nAPP_NAME = 'planted'\n",
        str(app_py),
        "exec",
    )
    cache = Path(importlib.util.cache_from_source(str(app_py)))
    cache.parent.mkdir()
    # PEP 552 unchecked hash-based: Python uses it without looking at app.py at all.
    cache.write_bytes(
        importlib.util.MAGIC_NUMBER
        + (0b01).to_bytes(4, "little")
        + b"\0" * 8
        + marshal.dumps(planted)
    )
    assert import_app(app_py).APP_NAME != "planted" and not Path("pyc-ran").exists()
    code, _, err = cli("render")
    assert code == 1 and "holds __pycache__, which the deployer did not write" in err


def test_the_apply_lock_never_writes_through_a_link(tmp_path):
    from deployer.deploy.apply import LockError, apply_lock

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    build = tmp_path / "build"
    build.mkdir()
    (build / ".deployer-apply.lock").symlink_to(victim)
    with pytest.raises(LockError, match="is it a link"):
        with apply_lock(build):
            pass
    (tmp_path / "linked-build").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(LockError, match="is a link"):
        with apply_lock(tmp_path / "linked-build"):
            pass
    assert victim.read_text() == "keep me" and not (tmp_path / "elsewhere").exists()


def test_a_planted_fifo_lock_file_is_a_lock_error(tmp_path):
    from deployer.deploy.apply import LockError, apply_lock

    (tmp_path / "build").mkdir()
    os.mkfifo(tmp_path / "build" / ".deployer-apply.lock")
    with pytest.raises(LockError, match="not a plain file"):
        with apply_lock(tmp_path / "build"):
            pass


def test_the_modal_cli_never_runs_in_the_repository(project, modal_world, cli):
    # `modal deploy` puts its working folder first on the import path: a committed modal.py or
    # shlex.py at the repository's root would run there, with the Modal token in its environment.
    project.deployment("a")
    assert cli("apply", "--yes")[0] == 0
    state = modal_world.fake.state
    assert state["cwd"] and not any(Path(cwd).is_relative_to(project.root) for cwd in state["cwd"])
    deploys = [argv for argv in state["argv"] if argv[:1] == ["deploy"]]
    assert deploys and all(Path(argv[1]).is_absolute() for argv in deploys)


def test_the_url_lookup_does_not_import_from_the_working_folder(project, monkeypatch):
    from deployer.deploy.platform.modal_cli import ModalCli

    project.write(
        "modal.py",
        "import pathlib; pathlib.Path('planted-ran').write_text('x')\nraise SystemExit(3)\n",
    )
    cli_ = ModalCli()
    cli_.url_timeout = 5  # the planted file would run at once; Modal itself is not reachable
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    monkeypatch.setenv("MODAL_SERVER_URL", "http://127.0.0.1:9")  # nothing listens: fails fast
    try:
        cli_.web_url("a")
    except Exception:
        pass
    assert not (project.root / "planted-ran").exists()
