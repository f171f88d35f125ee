"""image.python against the pinned vLLM release's Requires-Python, recorded in its flag catalog."""

from __future__ import annotations

import json

import pytest

from deployer.checks.pipeline import check_paths
from deployer.spec.model import _defaults
from deployer.vllm import catalog
from deployer.vllm.catalog import PythonRange

DEPLOYMENT = """\
base_model: {repo: Qwen/Qwen3-4B-Instruct-2507}
gpu: A10G
auth: {proxy: true}
vllm: {version: "%s"}
image:
  python: "%s"
"""


def python_findings(project, version: str, python: str):
    project.deployment("d", DEPLOYMENT % (version, python))
    checked = check_paths([project.deployments])
    return [d for d in (*checked.diagnostics, *checked.notes) if d.rule.startswith("image.python")]


@pytest.fixture
def catalogs(tmp_path, monkeypatch):
    """A folder of catalogs standing in for the shipped ones; returns a function that writes one."""
    folder = tmp_path / "catalogs"
    folder.mkdir()
    monkeypatch.setattr(catalog, "CATALOG_DIR", folder)
    catalog.load.cache_clear()

    def write(version: str, **fields) -> None:
        data = {"vllm_version": version, "distribution": f"vllm=={version}", "flags": {}}
        data.update(fields)
        (folder / f"{version}.json").write_text(json.dumps(data), encoding="utf-8")

    yield write
    catalog.load.cache_clear()


def test_every_shipped_catalog_records_requires_python_as_pip_reads_it():
    specifiers = pytest.importorskip("packaging.specifiers")
    versions = catalog.available_versions()
    assert versions
    for version in versions:
        text = catalog.load(version).requires_python
        assert text, f"the {version} catalog has no requires_python"
        ours, pips = PythonRange.parse(text), specifiers.SpecifierSet(text)
        for minor in range(20):
            admitted = any(pips.contains(f"3.{minor}.{patch}") for patch in range(30))
            assert ours.admits_series(f"3.{minor}") == admitted, (version, minor)


@pytest.mark.parametrize(
    "text",
    [">=3.10,<3.14", "<3.15,>=3.11", "~=3.10", "==3.12.*", "!=3.11.*,>=3.9", ">3.10", "<=3.12"],
)
def test_requires_python_forms_are_read_as_pip_reads_them(text):
    specifiers = pytest.importorskip("packaging.specifiers")
    ours, pips = PythonRange.parse(text), specifiers.SpecifierSet(text)
    for minor in range(20):
        for patch in range(5):
            assert ours.allows((3, minor, patch)) == pips.contains(f"3.{minor}.{patch}"), (
                text,
                minor,
                patch,
            )


@pytest.mark.parametrize("text", ["===3.12", ">=3.10rc1", "3.10", ">=3.*", "~=3"])
def test_requires_python_forms_it_cannot_read_are_refused(text):
    with pytest.raises(ValueError):
        PythonRange.parse(text)


def test_the_default_image_python_meets_every_shipped_catalog(project):
    default = _defaults("image")["python"]
    for version in catalog.available_versions():
        assert python_findings(project, version, default) == [], version


@pytest.mark.parametrize(
    ("version", "python", "allowed", "nearest"),
    [
        ("0.11.2", "3.9", ">=3.10, <3.14", "3.10"),
        ("0.11.2", "3.14", ">=3.10, <3.14", "3.13"),
        ("0.32.0", "3.10", ">=3.11, <3.15", "3.11"),
        ("0.33.0", "3.9", ">=3.11, <3.15", "3.11"),
    ],
)
def test_python_outside_the_pinned_vllms_range_is_an_error_at_the_value(
    project, version, python, allowed, nearest
):
    (error,) = python_findings(project, version, python)
    assert (error.rule, error.severity.value, error.path) == (
        "image.python-unsupported",
        "error",
        ("image", "python"),
    )
    assert (error.file, error.line, error.column) == ("deployments/d.yaml", 6, 11)
    assert f"image.python {python} is outside vLLM {version}'s Requires-Python" in error.message
    assert f"({allowed})" in error.message
    assert f'use image.python "{nearest}"' in error.hint and allowed in error.hint


@pytest.mark.parametrize(
    ("version", "python"), [("0.11.2", "3.10"), ("0.11.2", "3.13"), ("0.33.0", "3.14")]
)
def test_python_inside_the_range_is_no_finding(project, version, python):
    assert python_findings(project, version, python) == []


def test_a_python_set_in_the_defaults_file_is_reported_there(project):
    project.write("deployments/_defaults.yaml", 'image:\n  python: "3.14"\n')
    project.deployment("d", DEPLOYMENT.split("image:")[0] % "0.11.2")
    (error,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule.startswith("image.")
    ]
    assert (error.rule, error.file, error.line) == (
        "image.python-unsupported",
        "deployments/_defaults.yaml",
        2,
    )


def test_between_two_nearest_versions_the_hint_names_the_newer(project, catalogs):
    catalogs("9.0.0", requires_python="!=3.12.*,>=3.10")
    (error,) = python_findings(project, "9.0.0", "3.12")
    assert 'use image.python "3.13"' in error.hint


def test_a_range_no_python_meets_says_to_pin_another_vllm(project, catalogs):
    catalogs("9.0.0", requires_python=">=4.0")
    (error,) = python_findings(project, "9.0.0", "3.12")
    assert error.rule == "image.python-unsupported"
    assert "no Python 3 release meets >=4.0; pin another vLLM version" in error.hint


def test_a_catalog_without_requires_python_leaves_a_note(project, catalogs):
    catalogs("9.0.0")
    (note,) = python_findings(project, "9.0.0", "3.9")
    assert (note.rule, note.severity.value, note.line) == ("image.python-unchecked", "note", 6)
    assert "the flag catalog of vLLM 9.0.0 does not record its Requires-Python" in note.message
    assert "scripts/extract_vllm_flags.py --install 9.0.0" in note.hint


def test_a_requires_python_the_deployer_cannot_read_leaves_a_note(project, catalogs):
    catalogs("9.0.0", requires_python="===3.12")
    (note,) = python_findings(project, "9.0.0", "3.12")
    assert note.rule == "image.python-unchecked"
    assert "cannot read the Requires-Python clause '===3.12'" in note.message


def test_an_uncatalogued_version_leaves_a_note(project):
    (note,) = python_findings(project, "0.12.0", "3.9")
    assert note.rule == "image.python-unchecked"
    assert "there is no flag catalog for vLLM 0.12.0" in note.message
