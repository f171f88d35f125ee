"""Hostile input: nothing a file contains escapes as an exception or as code."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.load import load_bytes
from deployer.pipeline import check_paths
from deployer.render import render

from .conftest import MINIMAL, REPO

GOOD = (REPO / "deployments" / "qwen3-4b-multi.yaml").read_bytes()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_loader_never_raises_on_arbitrary_bytes(raw):
    document, problems = load_bytes(raw, "fuzz.yaml")
    assert document is not None or problems


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.binary(min_size=1, max_size=8))
def test_loader_never_raises_on_mutated_good_files(at, noise):
    load_bytes(GOOD[:at] + noise + GOOD[at + len(noise) :], "fuzz.yaml")


def test_a_file_name_with_a_newline_cannot_inject_code(project):
    (project.deployments / "x\nimport os  #.yaml").write_text(MINIMAL + "name: x\n")
    (deployment,) = check_paths([project.deployments]).deployments
    source = render(deployment, Path("build")).source
    tree = ast.parse(source)
    assert not any(isinstance(n, ast.Import) and n.names[0].name == "os" for n in tree.body)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40))
def test_any_env_value_reads_back_equal_from_the_rendered_app(project, value):
    import yaml

    project.deployment("e", MINIMAL + "image:\n  env:\n    VALUE: " + yaml.safe_dump(value, default_style='"', width=10_000).strip() + "\n")
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    source = render(checked.deployments[0], Path("build")).source
    call = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "env")
    assert ast.literal_eval(call.args[0]) == {"VALUE": value}
