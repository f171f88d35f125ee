"""GPU types: read in any case as Modal reads them, written in Modal's spelling, and a name that
is none of them gets the closest one and the complete list."""

from __future__ import annotations

import json
import re

import pytest

from deployer.checks.pipeline import check_paths
from deployer.spec.schema import schema

from ..conftest import MINIMAL, REPO

NAMES = schema()["$defs"]["gpu_type"]["examples"]


def only_gpu(project, gpu: str):
    project.deployment("g", MINIMAL.replace("gpu: A10G", f"gpu: {gpu}"))
    return check_paths([project.deployments])


@pytest.mark.parametrize(
    "written, spelled",
    [("a10g", "A10G"), ('"h100:2"', "H100:2"), ("{type: l40s, count: 2}", "L40S:2"),
     ("rtx-pro-6000", "RTX-PRO-6000"), ('"b200+"', "B200+"), ("a100-80gb", "A100-80GB")],
)  # fmt: skip
def test_a_gpu_type_in_any_case_is_modals_spelling_of_it(project, written, spelled):
    checked = only_gpu(project, written)
    assert checked.ok, checked.diagnostics
    (deployment,) = checked.deployments
    assert deployment.gpu.modal_spec == spelled


def test_lower_case_renders_the_very_app_of_modals_spelling(project, cli):
    project.deployment("a", MINIMAL.replace("gpu: A10G", "gpu: a10g"))
    assert cli("render")[0] == 0
    app = (project.root / "build" / "a" / "app.py").read_text()
    assert 'gpu="A10G"' in app and "a10g" not in app
    project.deployment("a")
    code, out, _ = cli("render", "--check")
    assert code == 0 and "up to date" in out


@pytest.mark.parametrize(
    "written, meant",
    [("L40", "L40S"), ('"L40:2"', "L40S:2"), ("a100-40g", "A100-40GB"), ("H110", "H100"),
     ("{type: l40}", "L40S")],
)  # fmt: skip
def test_an_unknown_gpu_type_gets_the_closest_one(project, written, meant):
    (error,) = only_gpu(project, written).diagnostics
    assert error.rule == "schema.pattern"
    assert error.hint.startswith(f"did you mean {meant!r}? ")


def test_a_bad_count_of_a_known_type_is_not_a_misspelling(project):
    (error,) = only_gpu(project, '"a10g:9"').diagnostics
    assert "did you mean" not in error.hint and "(1-8)" in error.hint


def test_the_list_in_the_hint_is_every_type_accepted(project):
    (error,) = only_gpu(project, "TPU").diagnostics
    listed = re.search(r"\((.*?)\)", error.hint).group(1).split(", ")
    known = json.loads((REPO / "deployer" / "data" / "gpus.json").read_text())["gpus"]
    assert listed == NAMES and set(listed) == set(known)
    assert {"A10", "A100"} <= set(listed)


@pytest.mark.parametrize("form", ["string", "object"])
def test_the_schema_accepts_exactly_the_listed_types_in_any_case(form):
    from jsonschema import Draft202012Validator

    gpu = schema()["properties"]["gpu"]["oneOf"][0 if form == "string" else 1]
    accepts = Draft202012Validator({**gpu, "$defs": schema()["$defs"]}).is_valid

    def value(name):
        return name if form == "string" else {"type": name}

    for name in NAMES:
        assert accepts(value(name)) and accepts(value(name.lower()))
        assert accepts(value(name[:1].lower() + name[1:]))
    for near_miss in [
        "L40",
        "A10GB",
        "H100!!",
        "B200++",
        "A100-40G",
        "T4\n",
        " T4",
        "RTX PRO 6000",
    ]:
        assert not accepts(value(near_miss)), near_miss
