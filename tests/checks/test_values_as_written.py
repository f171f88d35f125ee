"""Flag values as written: what YAML 1.1 would silently change is an error at the value, and a
negative number, in any form, is refused as a negative string is."""

from __future__ import annotations

import pytest

from deployer.checks.pipeline import check_paths


def deployment_with_args(project, args: str, version: str = "0.11.2") -> dict[str, list]:
    """The findings of a deployment whose vllm.args are `args` (its first flag on line 7), by rule."""
    project.deployment(
        "d",
        "base_model:\n  repo: Qwen/Qwen3-4B-Instruct-2507\ngpu: A10G\nvllm:\n"
        f'  version: "{version}"\n  args:\n{args}auth:\n  api_key: {{secret: test-api-key}}\n',
    )
    found: dict[str, list] = {}
    for d in check_paths([project.deployments]).diagnostics:
        found.setdefault(d.rule, []).append(d)
    return found


@pytest.mark.parametrize(
    ("written", "built", "reading"),
    [
        ("0123", "83", "an octal number"),
        ("0x1F00", "7936", "a hexadecimal number"),
        ("0b1000", "8", "a binary number"),
        ("1:30", "90", "a base-60 number"),
    ],
)
def test_a_number_yaml_reads_otherwise_is_an_error_quoting_both(project, written, built, reading):
    found = deployment_with_args(project, f"    max-model-len: {written}\n")
    (error,) = found["flags.changed-by-yaml"]
    assert (error.line, error.column) == (7, 20)
    assert f"unquoted {written} in --max-model-len as {built} ({reading})" in error.message
    assert f'"{written}"' in error.hint


@pytest.mark.parametrize(
    ("written", "built"), [("0.10", "0.1"), ("1_000", "1000"), ("1.0e+3", "1000.0")]
)
def test_a_number_where_the_flag_takes_text_must_keep_its_text(project, written, built):
    found = deployment_with_args(project, f"    response-role: {written}\n")
    (error,) = found["flags.changed-by-yaml"]
    assert f"unquoted {written} in --response-role as {built}" in error.message


@pytest.mark.parametrize(
    "args",
    [
        "    max-model-len: 8192\n",
        "    gpu-memory-utilization: 0.90\n",
        "    max-num-seqs: 1_024\n",  # the number it says, as Python and vLLM read it
        "    enable-prefix-caching: yes\n",  # a boolean flag: yes is what was meant
        "    disable-log-stats: True\n",
        '    response-role: "0123"\n',
        "    response-role: '1:30'\n",
        "    response-role: 2.0\n",
        "    seed: -5\n",
        "    compilation-config: {level: 3, cudagraph_capture_sizes: [1, 2_048], x: ~}\n",
    ],
)
def test_values_as_written_pass(project, args):
    found = deployment_with_args(project, args)
    assert "flags.changed-by-yaml" not in found and "flags.value-looks-like-flag" not in found


def test_a_yaml_11_boolean_where_the_flag_takes_text_is_an_error(project):
    found = deployment_with_args(project, "    compilation-config: {use_cudagraph: off}\n")
    (error,) = found["flags.changed-by-yaml"]
    assert "unquoted off in --compilation-config at use_cudagraph as false" in error.message
    assert (error.line, error.column) == (7, 41) and "write false" in error.hint


def test_a_value_inside_a_mapping_is_found_at_its_own_line(project):
    found = deployment_with_args(
        project, "    compilation-config:\n      level: 3\n      sizes: [1, 0x10]\n"
    )
    (error,) = found["flags.changed-by-yaml"]
    assert (error.line, error.column) == (9, 18)
    assert "--compilation-config at sizes[1] as 16" in error.message


def test_values_are_judged_without_a_catalog_for_the_version(project):
    found = deployment_with_args(project, "    some-flag: 0755\n", version="0.0.1")
    (error,) = found["flags.changed-by-yaml"]
    assert "unquoted 0755 in --some-flag as 493 (an octal number)" in error.message


@pytest.mark.parametrize(
    "args", ["response-role: -1.5", "response-role: -1.5e+3", "ignore-patterns: [a, -0.5]"]
)
def test_a_negative_number_with_a_point_is_refused_like_a_negative_string(project, args):
    found = deployment_with_args(project, f"    {args}\n")
    (error,) = found["flags.value-looks-like-flag"]
    assert "vLLM would read it as another flag" in error.message


def test_a_negative_number_inside_json_text_is_no_word_of_its_own(project):
    found = deployment_with_args(project, "    compilation-config: {x: [-1.5]}\n")
    assert "flags.value-looks-like-flag" not in found


def test_a_negative_number_in_another_base_is_an_error_too(project):
    found = deployment_with_args(project, "    seed: -0x2\n")
    (error,) = found["flags.changed-by-yaml"]
    assert "unquoted -0x2 in --seed as -2 (a hexadecimal number)" in error.message
