"""Hostile deployment files: bytes the loader must survive, YAML bombs, values the schema and the
checks must refuse as findings (never as a crash), and findings that must not let the file's own
text rewrite the terminal or a CI log."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deployer.render.app import render
from deployer.spec.load import load_bytes

from ..conftest import MINIMAL, REPO
from .helpers import TINY_HEAD, rules, tiny_project
from .strategies import DEPLOYMENT_SHAPED, NEAR_VALID, VALID

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


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=st.one_of(DEPLOYMENT_SHAPED, NEAR_VALID, NEAR_VALID, NEAR_VALID, st.just(VALID)))
def test_the_whole_pipeline_never_raises_and_renders_only_what_it_accepts(tmp_path, document):
    """load → schema → model → checks → render on any deployment-shaped document: findings, never
    an exception; whatever is accepted renders to Python that compiles."""
    import yaml

    from deployer.checks.pipeline import check_paths

    folder = tmp_path / "deployments"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    (folder / "fuzz.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    checked = check_paths([folder])
    event("accepted" if checked.ok and checked.deployments else "refused with findings")
    for deployment in checked.deployments if checked.ok else ():
        compile(render(deployment, tmp_path / "build").source, "app.py", "exec")


def test_a_merge_key_bomb_is_rejected_quickly(project, cli):
    # Each level merges the one before 20 times: 20**8 mappings once expanded. The loader counts
    # nodes as it builds them, so the bomb is refused by that count, not by how long it runs.
    lines = ["a0: &a0 {k: v}"] + [
        f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 20)}]}}" for i in range(1, 9)
    ]
    project.deployment("d", "\n".join(lines) + "\n")
    assert "yaml.too-many-nodes" in rules(cli)


@pytest.mark.parametrize(
    "edit",
    [
        ("gpu: A10G", 'gpu: "A10G\\n"'),
        ('version: "0.11.2"', 'version: "0.11.2\\n"'),
        ("base_model:\n", 'name: "abc\\n"\nbase_model:\n'),
        ("{secret: test-api-key}", '{secret: "k\\n"}'),
    ],
)
def test_a_trailing_newline_does_not_pass_a_pattern(project, cli, edit):
    """Python's `$` matches before a final newline: every pattern also refuses one."""
    project.deployment("a", MINIMAL.replace(*edit))
    code, out, _ = cli("render")
    assert code == 1 and ": error: " in out
    assert not (project.root / "build").exists()


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        ("{dtype: fp16}", "flags.value"),
        ("{gpu-memory-utilization: .nan}", "flags.value"),
        ("{gpu-memory-utilization: high}", "flags.value"),
        ("{max-loras: four}", "flags.value"),
        ("{ignore-patterns: ['*.pt', '--served-model-name', 'x']}", "flags.value-looks-like-flag"),
        ("{hf-token: hf_sentinel}", "secrets.in-args"),
        ("{allowed-media-domains: []}", "flags.value"),
    ],
)
def test_bad_vllm_args_are_findings_not_crashes(project, cli, args, rule):
    tiny_project(project)
    project.deployment("d", TINY_HEAD + f"vllm: {{version: '0.32.0', args: {args}}}\n")
    assert rule in rules(cli)


@pytest.mark.parametrize(
    "version", ["0.11.2", "0.10.0"]
)  # catalogued, and not (no catalog to say what is a flag)
def test_abbreviations_of_owned_or_credential_flags_are_refused(project, cli, version):
    args = "{api-ke: sk-live-SENTINEL, served-model: evil, tensor-parallel: 4}"
    project.deployment(
        "a", MINIMAL.replace('version: "0.11.2"', f'version: "{version}"\n  args: {args}')
    )
    code, out, _ = cli("render")
    assert code == 1 and not (project.root / "build").exists()
    assert "--api-ke is an abbreviation vLLM would read as --api-key" in out
    assert (
        "--served-model is an abbreviation" in out and "--tensor-parallel is an abbreviation" in out
    )


def test_a_real_flag_that_begins_like_an_owned_one_is_not_an_abbreviation(project, cli):
    project.deployment(
        "a",
        MINIMAL.replace(
            'version: "0.11.2"',
            'version: "0.10.0"\n  args: {tokenizer: Qwen/Qwen3-4B-Instruct-2507}',
        ),
    )
    code, out, _ = cli("validate")
    assert "abbreviation" not in out  # --tokenizer exists; --tokenizer-revision is owned


def test_credentials_in_image_env_are_refused(project, cli):
    project.deployment("d", MINIMAL + "image: {env: {HF_TOKEN: hf_sentinel}}\n")
    assert "secrets.in-env" in rules(cli)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (("gpu: A10G", "gpu: A10G:8"), "gpu.count"),
        (("auth:", "scaling: {min_containers: 3, max_containers: 2}\nauth:"), "scaling.bounds"),
        (
            ("auth:", "scaling: {max_concurrent_inputs: 8, target_concurrent_inputs: 16}\nauth:"),
            "scaling.bounds",
        ),
    ],
)
def test_impossible_resources_are_errors(project, cli, change, rule):
    project.deployment("d", MINIMAL.replace(*change))
    assert rule in rules(cli)


def test_a_repo_id_the_hub_rejects_is_an_error(project, cli):
    project.deployment("d", MINIMAL + "adapters: [{name: a, repo: a--b/c}]\n")
    assert "sources.unreadable" in rules(cli)


def test_a_deployment_choosing_a_local_base_replaces_a_default_hub_base(project, cli):
    tiny_project(project)
    project.write(
        "deployments/_defaults.yaml",
        "base_model: {repo: Qwen/Qwen3-4B-Instruct-2507, revision: main}\nvllm: "
        "{version: '0.32.0'}\n",
    )
    project.deployment("d", TINY_HEAD)
    assert "schema.one-of" not in rules(cli)


def test_second_review_small_cases_are_findings_not_crashes(project, cli):
    from deployer.core.diagnostics import printable as _printable

    assert _printable("safe\u202eevil") == "safe\\u202eevil"
    project.deployment(
        "a",
        MINIMAL.replace(
            'version: "0.11.2"', 'version: "0.11.2"\n  args: {kv-cache-dtype: 2020-13-45}'
        ),
    )
    code, out, _ = cli("validate")
    assert code == 1 and "cannot read value: month must be in 1..12" in out
    project.deployment("a")
    project.write(
        "build/a/local-server.json", '{"url": "http://127.0.0.1:8000", "pid": 99999999999999999999}'
    )
    code, _, err = cli("smoke", "a", "--timeout", "1")
    assert code == 2 and "internal error" not in err


def test_a_path_with_a_name_too_long_is_a_schema_error(project, cli):
    project.deployment(
        "x",
        f"base_model: {{path: ../{'a' * 300}, served_name: m}}\ngpu: A10G\nvllm: "
        f"{{version: '0.11.2'}}\nauth: {{proxy: true}}\n",
    )
    code, out, err = cli("validate")
    assert code == 1 and "internal error" not in err and "each name at most 255 characters" in out


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "x" * 300],
        ["render", "--out", "b" * 300],
        ["validate", "--deployments", "d" * 300],
    ],
)
def test_command_line_paths_too_long_are_usage_errors(project, cli, args):
    project.deployment("a")
    code, out, err = cli(*args)
    assert "internal error" not in err and code in (1, 2)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "adapters:\n" + "".join(f"  - {{name: a{i}, repo: org/a{i}}}\n" for i in range(1001)),
            "adapters has 1,001 items; at most 1,000 are allowed",
        ),
        (
            "vllm:\n  version: '0.11.2'\n  args:\n"
            + "".join(f"    max-num-batched-tokenz{i}: 1\n" for i in range(401)),
            "vllm.args has 401 entries; at most 400 are allowed",
        ),
    ],
)
def test_sizes_beyond_any_real_deployment_are_refused_by_the_schema(project, cli, section, message):
    # Each unknown flag costs a did-you-mean and each adapter a folder walk: the counts are capped.
    base = (
        MINIMAL
        if section.startswith("adapters")
        else MINIMAL.replace('vllm:\n  version: "0.11.2"\n', "")
    )
    project.deployment("x", base + section)
    code, out, _ = cli("validate")
    assert code == 1 and message in out and len(out) < 2000


def test_a_quoted_source_line_is_cut_around_its_column_and_escaped(project, cli):
    project.write(
        "deployments/x.yaml",
        "gpu: A10G\nunknown_key: " + "v" * 5000 + " SENTINEL\nbase_model: {repo: a/b}\n",
    )
    project.write("deployments/y.yaml", "gpu: A10G\n\x1b[2Jname: y\n")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out and max(len(line) for line in out.splitlines()) < 400
    assert "\x1b" not in out


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_findings_quoting_yaml_keys_and_adapter_configs_stay_on_their_line(project, cli, fmt):
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": 8,
                "lora_alpha": 16,
                "target_modules": ["q_proj"],
                "modules_to_save": ["lm_head\n::warning::INJECTED\x1b[2J\u202e"],
            }
        )
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    project.deployment(
        "x",
        MINIMAL + '"k\\n::error::KEY\\e[2J": 1\nadapters:\n  - {name: a, path: ../adapters/a}\n',
    )
    code, out, _ = cli("validate", "--format", fmt)
    assert code == 1 and "\x1b" not in out and "\u202e" not in out
    assert not any(
        line.startswith(("::error::KEY", "::warning::INJECTED")) for line in out.splitlines()
    ), out
