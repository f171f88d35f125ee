"""Validation end to end: the shipped examples, the corpus of bad files, and every-problem-at-once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from deployer.checks.pipeline import check_paths
from deployer.spec.model import _defaults
from deployer.spec.schema import schema

from ..conftest import FIXTURES, MINIMAL, REPO

BAD = FIXTURES / "bad"
EXPECT = re.compile(r"^# expect: (\d+):(\d+) (\S+) (.+?)(?: \| (.+))?$")


def expectations(path: Path) -> set[tuple[int, int, str]]:
    found = set()
    for line in path.read_text(
        encoding="utf-8", errors="replace"
    ).splitlines():  # the corpus has a file that is not UTF-8
        match = EXPECT.match(line)
        if match:
            found.add(match.groups())
    return found


def test_schema_is_valid_draft_2020_12_and_closed_at_every_level():
    Draft202012Validator.check_schema(schema())

    def walk(node, where):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "additionalProperties" not in node
                and "properties" in node
            ):
                pytest.fail(f"object without additionalProperties at {where}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema(), "#")
    assert schema()["additionalProperties"] is False


def test_shipped_deployments_validate_with_warnings_for_what_cannot_be_checked_offline():
    checked = check_paths([REPO / "deployments"])
    assert sorted(d.name for d in checked.deployments) == ["chess-puzzle", "qwen3-4b-multi"]
    # The lock pins their packages; their Hub commits cannot be resolved from here (unresolved).
    assert [(Path(d.file).name, d.rule) for d in checked.diagnostics] == [
        ("chess-puzzle.yaml", "lock.unresolved"),  # the base model
        ("chess-puzzle.yaml", "lora.unknown-rank"),  # the Hub is not reachable from CI
        ("chess-puzzle.yaml", "lock.unresolved"),  # the adapter
        ("chess-puzzle.yaml", "auth.public"),  # like the hand-written app it reproduces
        ("qwen3-4b-multi.yaml", "lock.unresolved"),
        ("qwen3-4b-multi.yaml", "lora.unknown-rank"),
        ("qwen3-4b-multi.yaml", "lock.unresolved"),
        ("qwen3-4b-multi.yaml", "lora.unknown-rank"),
        ("qwen3-4b-multi.yaml", "lock.unresolved"),
        ("qwen3-4b-multi.yaml", "lora.unknown-rank"),
        ("qwen3-4b-multi.yaml", "lock.unresolved"),
    ]


def test_shipped_examples_carry_the_schema_line_for_editors():
    for path in sorted((REPO / "deployments").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == "# yaml-language-server: $schema=../deployer/deployment.schema.json", path
        assert (path.parent / "../deployer/deployment.schema.json").resolve().is_file()


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_bad_file_reports_exactly_the_expected_problems(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' lines"
    checked = check_paths([path])
    found = {(d.line, d.column, d.rule): d for d in checked.diagnostics}
    assert set(found) == {(int(line), int(col), rule) for line, col, rule, _, _ in expected}, (
        "\n".join(f"{d.line}:{d.column} {d.rule} {d.message}" for d in checked.diagnostics)
    )
    for line, column, rule, message, hint in expected:
        diagnostic = found[(int(line), int(column), rule)]
        assert message in diagnostic.message
        assert diagnostic.file.endswith(path.name)
        if hint:
            assert hint in diagnostic.hint


def test_every_problem_in_every_file_is_reported_in_one_run():
    checked = check_paths([BAD])
    files_with_errors = {Path(d.file).name for d in checked.diagnostics if d.is_error}
    assert files_with_errors == {p.name for p in BAD.glob("*.yaml")}
    assert len(checked.diagnostics) == sum(len(expectations(p)) for p in BAD.glob("*.yaml"))


def test_schema_defaults_are_the_reference_apps_settings():
    assert _defaults("image") == {
        "base": "nvidia/cuda:12.8.0-devel-ubuntu22.04",
        "python": "3.12",
        "pip": ["huggingface-hub==0.36.0"],
        "env": {},
    }
    assert _defaults("scaling")["scaledown_window"] == 300
    assert _defaults("scaling")["startup_timeout"] == 600
    assert _defaults("scaling")["max_containers"] == 4


def test_defaults_file_values_reach_every_deployment(project):
    project.write(
        "deployments/_defaults.yaml", "vllm: {version: '0.12.0'}\ngpu: L4\nauth: {proxy: true}\n"
    )
    project.deployment("a", "base_model: {repo: org/model}\n")
    project.deployment("b", "base_model: {repo: org/model}\ngpu: H100\nvllm: {version: '0.11.2'}\n")
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    by_name = {d.name: d for d in checked.deployments}
    assert (by_name["a"].vllm.version, by_name["a"].gpu.type) == ("0.12.0", "L4")
    assert (by_name["b"].vllm.version, by_name["b"].gpu.type) == ("0.11.2", "H100")


def test_error_in_a_default_points_at_the_defaults_file_once(project):
    project.write(
        "deployments/_defaults.yaml", "vllm: {version: '0.11.2', argz: {}}\nauth: {proxy: true}\n"
    )
    project.deployment("a", "base_model: {repo: org/model}\ngpu: T4\n")
    project.deployment("b", "base_model: {repo: org/model}\ngpu: T4\n")
    checked = check_paths([project.deployments])
    assert [(d.file, d.line, d.column, d.rule) for d in checked.diagnostics] == [
        ("deployments/_defaults.yaml", 1, 27, "schema.unknown-key")
    ]
    assert checked.diagnostics[0].hint == "did you mean 'args'?"


def test_broken_defaults_file_is_reported_and_deployments_are_not_misjudged_without_it(project):
    project.write("deployments/_defaults.yaml", "vllm: [\n")
    project.deployment("a", "base_model: {repo: org/model}\n")
    checked = check_paths([project.deployments])
    assert [d.file for d in checked.diagnostics] == ["deployments/_defaults.yaml"]
    assert checked.diagnostics[0].rule == "yaml.syntax"


def test_app_names_must_be_unique_across_files(project):
    project.deployment("first")
    project.deployment("second", MINIMAL + "name: first\n")
    checked = check_paths([project.deployments])
    assert [(d.file, d.rule) for d in checked.diagnostics] == [
        ("deployments/second.yaml", "names.duplicate-app")
    ]
    assert "deployments/first.yaml" in checked.diagnostics[0].message


def test_file_name_that_cannot_be_an_app_name_needs_a_name_key(project):
    project.deployment("Chess_Puzzle")
    checked = check_paths([project.deployments])
    assert [d.rule for d in checked.diagnostics] == ["names.file-name"]
    project.deployment("Chess_Puzzle", MINIMAL + "name: chess\n")
    assert check_paths([project.deployments]).ok


def test_gpu_forms_are_equivalent(project):
    for i, gpu in enumerate(['"H100:2"', "{type: H100, count: 2}"]):
        project.deployment(f"g{i}", MINIMAL.replace("gpu: A10G", f"gpu: {gpu}"))
    gpus = {d.gpu for d in check_paths([project.deployments]).deployments}
    assert len(gpus) == 1 and next(iter(gpus)).modal_spec == "H100:2"


def test_local_paths_resolve_against_the_file_that_wrote_them(project):
    (project.root / "models" / "tiny").mkdir(parents=True)
    (project.root / "deployments" / "adapters" / "a").mkdir(parents=True)
    project.deployment(
        "local",
        "base_model: {path: ../models/tiny, served_name: tiny}\nadapters: [{name: a, "
        "path: adapters/a}]\ngpu: T4\nvllm: {version: '0.11.2'}\nauth: {proxy: true}\n",
    )
    (deployment,) = check_paths([project.deployments]).deployments
    assert deployment.base_model.source.path == project.root / "models" / "tiny"
    assert deployment.adapters[0].source.path == project.root / "deployments" / "adapters" / "a"


def test_json_report_lists_every_field(project, cli):
    project.deployment("a", MINIMAL.replace("gpu: A10G", "gpu: A10G\ngpux: 1"))
    code, out, _ = cli("validate", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["errors"] == 1 and report["files"] == 1
    (item,) = report["diagnostics"]
    assert item == {
        "file": "deployments/a.yaml",
        "line": 4,
        "column": 1,
        "message": "unknown key 'gpux'",
        "severity": "error",
        "path": ["gpux"],
        "hint": "did you mean 'gpu'?",
        "rule": "schema.unknown-key",
        "location": "gpux",
        "accepted": None,
    }
