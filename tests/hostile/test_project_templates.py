"""A project's own templates/ folder: templates that declare another encoding, are not UTF-8,
break, escape the sandbox, exhaust memory or time, read files through links, or change the
deployer's own data while rendering. Each is an error at the template's line, and nothing is
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths

from ..conftest import REPO


def test_a_project_template_declaring_another_encoding_is_an_error(project, cli):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", "# -*- coding: latin-1 -*-\nx = 1\n")
    code, _, err = cli("render")
    assert code == 1 and "declaring the source encoding 'iso-8859-1'" in err


def test_a_project_template_that_is_not_utf8_is_an_error(project, cli):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", "")
    (project.root / "templates" / "modal_app.py.j2").write_bytes(b"x = '\xff\xfe'\n")
    code, _, err = cli("render")
    assert code == 1 and "a template is not UTF-8 text" in err and "internal error" not in err


@pytest.mark.parametrize(
    "template, message",
    [
        ("ok\n{% if %}\n", ":2: error: template syntax: Expected an expression"),
        ("ok\n{{ nosuch }}\n", ":2: error: 'nosuch' is undefined"),
    ],
)
def test_a_broken_project_template_is_an_error_at_its_line(project, cli, template, message):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", template)
    code, out, err = cli("render")
    assert code == 1 and "internal error" not in err
    assert (
        f"templates/modal_app.py.j2{message}" in err
        and "remove the project's templates/ folder" in err
    )
    assert not (project.root / "build").exists()


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{ 1/0 }}\n", "ZeroDivisionError"),
        ("x = {{ name }}(\n", "is not valid Python"),
        (
            "{{ name.__class__.__mro__[1].__subclasses__() }}\n",
            ":1: error: access to attribute '__class__' of 'str' object is unsafe",
        ),
        (
            "{{ 'x' * 10**10 }}\n",
            ":1: error: the sandbox refuses repeating a value more than 100,000 times",
        ),
        ("{{ 7 ** 1000000 }}\n", ":1: error: the sandbox refuses an exponent over 1000"),
        ("{% for i in range(10**12) %}{% endfor %}\n", ":1: error: OverflowError: Range too big"),
        # Limits beyond the sandbox's counters: memory, nesting, and the size of what is written.
        ('{% set s = ("x" * 100000).replace("x", "y" * 30000) %}\n', ":1: error: MemoryError"),
        (
            "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}\n",
            "the template nests too deeply to compile",
        ),
        (
            '{% for i in range(11) %}{{ "x" * 100000 }}{% endfor %}\n',
            "it rendered 1,100,001 characters",
        ),
    ],
)
def test_a_project_template_that_fails_or_writes_bad_python_is_an_error(
    project, cli, template, message
):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", template)
    code, _, err = cli("render")
    assert code == 1 and message in err and "internal error" not in err


def test_a_project_template_that_never_ends_is_stopped_at_its_line(project, cli, monkeypatch):
    from deployer.render import templates

    monkeypatch.setattr(templates, "RENDER_SECONDS", 1)
    project.deployment("a")
    project.write(
        "templates/modal_app.py.j2",
        "ok\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
    )
    code, _, err = cli("render")
    assert (
        code == 1
        and "templates/modal_app.py.j2:2: error: rendering took longer than 1 s; does a "
        "loop never end?"
        in err
    )


@pytest.mark.parametrize("link", ["env", "modal_app.py.j2"])
def test_project_templates_are_read_only_as_plain_files(project, cli, link):
    secret = project.root.parent / f"{project.root.name}-leak"
    secret.write_text("SENTINEL")
    project.deployment("a")
    shipped = (REPO / "templates" / "modal_app.py.j2").read_text()
    (project.root / "templates").mkdir()
    if link == "env":
        project.write(
            "templates/modal_app.py.j2",
            'LEAK = {% filter py %}{% include "env" %}{% endfilter %}\n' + shipped,
        )
        (project.root / "templates" / "env").symlink_to(secret)
    else:
        secret.write_text(shipped + "# SENTINEL\n")
        (project.root / "templates" / "modal_app.py.j2").symlink_to(secret)
    code, out, err = cli("render")
    assert (
        code == 1
        and "templates are read only as plain files" in err
        and "SENTINEL" not in out + err
    )
    assert not (project.root / "build" / "a" / "app.py").exists()


def test_what_a_template_appends_to_does_not_outlive_its_render(project):
    from deployer.render.app import render
    from deployer.vllm import argv

    before = list(argv.WEIGHT_FILE_KINDS)
    project.write(
        "templates/modal_app.py.j2",
        '{% set _ = weight_file_kinds.append("x" * 1000) %}x = {{ weight_file_kinds|length }}\n',
    )
    project.deployment("a")
    checked = check_paths([project.deployments])
    from deployer.render.templates import project_templates

    for _ in range(3):
        assert (
            render(
                checked.deployments[0], Path("build"), project_templates(project.deployments)
            ).source
            == f"x = {len(before) + 1}\n"
        )
    assert argv.WEIGHT_FILE_KINDS == before
