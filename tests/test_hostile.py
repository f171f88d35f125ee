"""Hostile input: nothing a file contains escapes as an exception or as code."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deployer.checks.pipeline import check_paths
from deployer.render.app import literal, render
from deployer.spec.load import load_bytes

from .conftest import MINIMAL, REPO, link_chain

GOOD = (REPO / "deployments" / "qwen3-4b-multi.yaml").read_bytes()

LLAMA_CONFIG = (
    '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, '
    '"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, '
    '"max_position_embeddings": 512}'
)
# A deployment of the project's models/m folder (see local_model).
LOCAL_MODEL_DEPLOYMENT = (
    "base_model: {path: ../models/m, served_name: m}\ngpu: A10G\nvllm: {version: "
    "'0.11.2'}\nauth: {proxy: true}\n"
)


def local_model(project, config: str = LLAMA_CONFIG) -> Path:
    """The project's models/m folder, holding a config.json."""
    model = project.root / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text(config)
    return model


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


def test_a_path_cannot_declare_the_apps_source_encoding(project, tmp_path):
    import subprocess
    import sys
    import tokenize

    model = project.root / "m coding:unicode_escape"
    model.mkdir()
    (model / "config.json").write_text(
        '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, '
        '"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, '
        '"max_position_embeddings": 512}'
    )
    marker = tmp_path / "injected"
    payload = f"', open({str(marker)!r}, 'w'), '\""
    project.deployment(
        "x",
        f'base_model: {{path: "../m coding:unicode_escape", served_name: m}}\ngpu: '
        'A10G\nvllm:\n  version: "0.11.2"\n  args:\n    chat-template: '
        f"{json.dumps(payload)}\nauth: none\n",
    )
    (deployment,) = check_paths([project.deployments]).deployments
    app = render(deployment, project.root / "build")
    assert (
        tokenize.detect_encoding(
            iter([line.encode() + b"\n" for line in app.source.splitlines()[:2]]).__next__
        )[0]
        == "utf-8"
    )
    app.path.parent.mkdir(parents=True)
    app.path.write_text(app.source, encoding="utf-8")
    subprocess.run(
        [sys.executable, "-c", f"import runpy; runpy.run_path({str(app.path)!r})"],
        capture_output=True,
        timeout=60,
    )
    assert not marker.exists()


def test_a_project_template_declaring_another_encoding_is_an_error(project, cli):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", "# -*- coding: latin-1 -*-\nx = 1\n")
    code, _, err = cli("render")
    assert code == 1 and "declaring the source encoding 'iso-8859-1'" in err


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=40,
    )
)
def test_any_env_value_reads_back_equal_from_the_rendered_app(project, value):
    import yaml

    project.deployment(
        "e",
        MINIMAL
        + "image:\n  env:\n    VALUE: "
        + yaml.safe_dump(value, default_style='"', width=10_000).strip()
        + "\n",
    )
    checked = check_paths([project.deployments])
    if any(
        ch < " " and ch != "\t" or ch == "\x7f" for ch in value
    ):  # Modal's Dockerfile ENV line would break
        assert [d.rule for d in checked.diagnostics if d.severity.value == "error"] == [
            "image.env-control"
        ]
        return
    assert checked.ok, checked.diagnostics
    source = render(checked.deployments[0], Path("build")).source
    call = next(
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "env"
    )
    assert ast.literal_eval(call.args[0]) == {"VALUE": value}


# Inputs found by review that once escaped as exceptions ("internal error"), each with the
# finding it must produce instead.

TINY_HEAD = "base_model: {path: ../models/tiny, served_name: tiny}\ngpu: T4\nauth: none\n"


def tiny_project(project, config_edit=None, adapter_edit=None, header=None):
    import json as _json

    from .tiny_model import build_base_model, build_lora_adapter

    base = build_base_model(project.root / "models" / "tiny")
    if config_edit:
        config = _json.loads((base / "config.json").read_text())
        config_edit(config)
        (base / "config.json").write_text(_json.dumps(config))
    if header is not None:
        raw = header.encode()
        (base / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    if adapter_edit:
        folder = build_lora_adapter(project.root / "adapters" / "a", str(base), 8, seed=1)
        config = _json.loads((folder / "adapter_config.json").read_text())
        replaced = adapter_edit(config)  # edits in place, or returns the whole file's text
        (folder / "adapter_config.json").write_text(
            replaced if isinstance(replaced, str) else _json.dumps(config)
        )
    return base


def rules(cli, *args):
    code, out, err = cli("validate", "--format", "json", *args)
    assert "internal error" not in err and "Traceback" not in err, err
    report = json.loads(out)
    return {d["rule"] for d in report["diagnostics"] + report["notes"]}


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
    ("edit", "rule"),
    [
        (lambda c: c.clear() or c.update({"x": 1}), "fit.skipped"),
        (lambda c: c.update(num_attention_heads=0, head_dim=None), "fit.skipped"),
        (lambda c: c.update(vocab_size="x"), "fit.skipped"),
        (lambda c: c.update(hidden_size=1e999), "fit.skipped"),
        (lambda c: c.update(num_hidden_layers=0), "fit.skipped"),
        (lambda c: c.pop("max_position_embeddings"), "fit.skipped"),
    ],
)
def test_odd_base_model_configs_are_notes_not_crashes(project, cli, edit, rule):
    tiny_project(project, config_edit=edit)
    project.deployment("d", TINY_HEAD + "vllm: {version: '0.32.0'}\n")
    assert rule in rules(cli)


def test_a_base_config_that_is_not_an_object_is_an_error(project, cli):
    base = tiny_project(project)
    (base / "config.json").write_text("[]")
    project.deployment("d", TINY_HEAD + "vllm: {version: '0.32.0'}\n")
    assert "sources.unreadable" in rules(cli)


@pytest.mark.parametrize(
    "header",
    [
        "[1, 2]",
        '{"a.weight": [1]}',
        '{"a.weight": {"dtype": "F16", "shape": 5}}',
        '{"a.weight": {"dtype": "F16", "shape": ["x"]}}',
    ],
)
def test_malformed_safetensors_headers_are_notes_not_crashes(project, cli, header):
    tiny_project(project, header=header)
    project.deployment("d", TINY_HEAD + "vllm: {version: '0.32.0'}\n")
    assert "fit.skipped" in rules(cli)


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (lambda c: c.update(target_modules=[1]), "compat.unknown-target"),
        (lambda c: c.update(modules_to_save=5), "compat.modules-to-save"),
        (lambda c: c.update(base_model_name_or_path=5), None),
        (lambda c: "[" * 100_000 + "]" * 100_000, "sources.unreadable"),
    ],
)
def test_odd_adapter_configs_are_findings_not_crashes(project, cli, edit, rule):
    tiny_project(project, adapter_edit=edit)
    project.deployment(
        "d", TINY_HEAD + "vllm: {version: '0.32.0'}\nadapters: [{name: a, path: ../adapters/a}]\n"
    )
    found = rules(cli)
    assert rule is None or rule in found


def test_a_repo_id_the_hub_rejects_is_an_error(project, cli):
    project.deployment("d", MINIMAL + "adapters: [{name: a, repo: a--b/c}]\n")
    assert "sources.unreadable" in rules(cli)


def test_a_smoke_pattern_too_large_to_compile_is_a_finding(project, cli):
    project.deployment(
        "d", MINIMAL + "smoke: {expect: {Qwen/Qwen3-4B-Instruct-2507: 'a{4294967296}'}}\n"
    )
    assert "smoke.bad-pattern" in rules(cli)


def test_a_merge_key_bomb_is_rejected_quickly(project, cli):
    import time

    lines = ["a0: &a0 {k: v}"] + [
        f"a{i}: &a{i} {{<<: [{', '.join([f'*a{i - 1}'] * 20)}]}}" for i in range(1, 9)
    ]
    project.deployment("d", "\n".join(lines) + "\n")
    start = time.monotonic()
    assert "yaml.too-many-nodes" in rules(cli)
    assert time.monotonic() - start < 10


def test_whole_floats_become_ints_in_the_rendered_app(project):
    project.deployment(
        "d",
        MINIMAL.replace("gpu: A10G", "gpu: {type: H100, count: 2.0}")
        + "scaling: {scaledown_window: 300.0}\n",
    )
    (deployment,) = check_paths([project.deployments]).deployments
    source = render(deployment, Path("build")).source
    assert (
        'gpu="H100:2"' in source
        and "scaledown_window=300," in source
        and '"--tensor-parallel-size",\n    "2",' in source
    )


def test_credentials_in_image_env_are_refused(project, cli):
    project.deployment("d", MINIMAL + "image: {env: {HF_TOKEN: hf_sentinel}}\n")
    assert "secrets.in-env" in rules(cli)


def test_smoke_of_a_url_without_a_scheme_fails_cleanly(cli):
    code, out, err = cli("smoke", "example.invalid:99999", "--timeout", "1")
    assert code in (1, 2) and "Traceback" not in err and "internal error" not in err


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


def test_a_gpu_count_that_does_not_divide_the_heads_is_an_error(project, cli):
    tiny_project(project)  # 2 attention heads
    project.deployment(
        "d", TINY_HEAD.replace("gpu: T4", "gpu: T4:4") + "vllm: {version: '0.32.0'}\n"
    )
    assert "gpu.tensor-parallel" in rules(cli)


def test_rope_scaling_extends_the_context_vllm_allows(project, cli):
    yarn = {
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 2048,
        }
    }
    tiny_project(project, config_edit=lambda c: c.update(yarn))
    project.deployment("d", TINY_HEAD + "vllm: {version: '0.32.0', args: {max-model-len: 8192}}\n")
    assert "fit.beyond-model" not in rules(cli)
    project.deployment("d", TINY_HEAD + "vllm: {version: '0.32.0', args: {max-model-len: 8193}}\n")
    assert "fit.beyond-model" in rules(cli)


def test_a_deployment_choosing_a_local_base_replaces_a_default_hub_base(project, cli):
    tiny_project(project)
    project.write(
        "deployments/_defaults.yaml",
        "base_model: {repo: Qwen/Qwen3-4B-Instruct-2507, revision: main}\nvllm: "
        "{version: '0.32.0'}\n",
    )
    project.deployment("d", TINY_HEAD)
    assert "schema.one-of" not in rules(cli)


def test_smoke_never_prints_credentials_in_the_url(cli):
    code, out, err = cli("smoke", "http://user:s3cret-pw@127.0.0.1:9/v1", "--timeout", "1")
    assert code == 1 and "s3cret-pw" not in out + err


@pytest.mark.parametrize(
    "state",
    [
        {"url": "http://127.0.0.1:18778", "pid": 0},
        {"url": "http://127.0.0.1:18778", "pid": -1},
        {"url": 5, "pid": 1},
        {"url": "http://attacker.example:80", "pid": 1},
        {"url": "http://127.0.0.1:1", "pid": True},
        [],
        "x",
    ],
)
def test_a_planted_state_file_is_not_believed(project, cli, monkeypatch, state):
    """smoke sends the API key to the URL of a running local server's state file."""
    project.deployment("a")
    project.write("build/a/local-server.json", json.dumps(state))
    monkeypatch.setenv("VLLM_API_KEY", "sk-SENTINEL")
    code, out, err = cli("smoke", "a", "--timeout", "1")
    assert code == 2 and "no known URL for 'a'" in err and "internal error" not in err


def test_a_state_file_whose_pid_is_not_vllm_is_ignored(tmp_path):
    import subprocess

    from deployer.local.server import read_state, write_state

    other = subprocess.Popen(["sleep", "30"])
    try:
        write_state(tmp_path, "http://127.0.0.1:1", other.pid, ["m"])
        assert read_state(tmp_path) is None
    finally:
        other.kill()


def test_a_state_file_naming_someone_elses_vllm_process_is_ignored(tmp_path):
    import subprocess

    from deployer.local.server import read_state, write_state

    # A process with "vllm" on its command line, as a user's own server would have.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "vllm"])
    try:
        planted = {"url": "http://127.0.0.1:1", "pid": other.pid, "models": ["m"]}
        for started in (None, 0, "x"):
            (tmp_path / "local-server.json").write_text(json.dumps(planted | {"started": started}))
            assert read_state(tmp_path) is None
        write_state(tmp_path, "http://127.0.0.1:1", other.pid, ["m"])  # what serve --local writes
        assert read_state(tmp_path)["pid"] == other.pid
    finally:
        other.kill()


# Injection-proof rendering: any string the schema accepts, in every place a string reaches the
# rendered app, must stay data. The app must compile, have exactly the statements the template
# writes (the same AST as a deployment with plain strings in those places), and give every value
# back through ast.literal_eval.

NASTY = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
) | st.sampled_from(
    [
        "'''",
        '"""',
        "\\",
        "\n",
        "{{ x }}",
        "{% if %}",
        "# c",
        "\"); import os; os.system('x')  #",
        "\u2028",
        "\r\n",
        "${HOME}",
        "m coding:unicode_escape",
        "-*- coding=latin-1 -*-",
    ]
)


def _shape(source: str) -> str:
    class Blank(ast.NodeTransformer):
        def visit_Constant(self, node):
            return ast.Constant(value=None)

    return ast.dump(Blank().visit(ast.parse(source)))


def _render_yaml(data: dict, name: str, folder: Path, loaded: dict | None = None) -> str | None:
    import yaml

    from deployer.spec.load import load_bytes
    from deployer.spec.model import build_deployment
    from deployer.spec.schema import validate

    document, problems = load_bytes(
        yaml.safe_dump(data, allow_unicode=True).encode(), f"{name}.yaml"
    )
    if document is None or problems or validate(document):
        return None
    deployment = build_deployment(document, {f"{name}.yaml": folder})
    if loaded is not None:
        loaded.update(
            document.data
        )  # as YAML read it (PyYAML's dump and load disagree on e.g. U+0085)
    return render(deployment, folder / "build").source


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    role=NASTY,
    env=NASTY,
    model_path=NASTY.filter(lambda s: not any(ord(c) < 32 for c in s)),
    adapter_path=NASTY.filter(lambda s: not any(ord(c) < 32 for c in s)),
)
def test_no_schema_valid_string_becomes_code(tmp_path, role, env, model_path, adapter_path):
    def deployment(role, env, model_path, adapter_path):
        return {
            "base_model": {"path": model_path, "served_name": "tiny"},
            "adapters": [{"name": "a", "path": adapter_path}],
            "gpu": "T4",
            "vllm": {"version": "0.11.2", "args": {"response-role": role, "chat-template": role}},
            "image": {"env": {"VALUE": env}},
            "auth": "none",
        }

    loaded: dict = {}
    hostile = _render_yaml(deployment(role, env, model_path, adapter_path), "d", tmp_path, loaded)
    role, env = loaded["vllm"]["args"]["response-role"], loaded["image"]["env"]["VALUE"]
    plain = _render_yaml(deployment("x", "x", "x", "x"), "d", tmp_path)
    assert hostile is not None and plain is not None
    # As bytes, the way Python imports a file: a coding comment on line 1 or 2 would apply.
    compile(hostile.encode("utf-8"), "app.py", "exec")
    assert _shape(hostile) == _shape(plain)
    tree = ast.parse(hostile.encode("utf-8"))
    constants = {
        n.targets[0].id: ast.literal_eval(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id.isupper()
        and n.targets[0].id != "HERE"
    }
    flags = constants["VLLM_FLAGS"]
    assert (
        flags[flags.index("--response-role") + 1] == role
        and flags[flags.index("--chat-template") + 1] == role
    )
    env_call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "env"
    )
    assert ast.literal_eval(env_call.args[0]) == {"VALUE": env}


def test_a_symlink_out_of_the_repository_is_refused(project, cli, tmp_path_factory, monkeypatch):
    outside = tmp_path_factory.mktemp("home") / ".ssh"
    outside.mkdir()
    (outside / "id_ed25519").write_text("private key")
    (project.root / ".git").mkdir()
    (project.root / "adapters").mkdir()
    (project.root / "adapters" / "innocent").symlink_to(outside)
    project.deployment(
        "a", MINIMAL + "adapters:\n  - name: innocent\n    path: ../adapters/innocent\n"
    )
    code, out, _ = cli("validate")
    assert code == 1
    assert (
        "deployments/a.yaml:10:11: error: adapter 'innocent' folder "
        "'../adapters/innocent' resolves through a symlink to" in out
    )
    assert "outside the repository" in out and "DEPLOYER_ALLOW_OUTSIDE_REPO=1" in out
    code, _, _ = cli("render")
    assert code == 1 and not (project.root / "build").exists()
    monkeypatch.setenv("DEPLOYER_ALLOW_OUTSIDE_REPO", "1")  # the operator's choice, not the YAML's
    code, out, _ = cli("validate")
    assert "outside the repository" not in out


def test_a_relative_path_climbing_out_of_the_repository_is_refused(project, cli):
    (project.root / ".git").mkdir()
    project.deployment(
        "a",
        MINIMAL.replace(
            "base_model:\n  repo: Qwen/Qwen3-4B-Instruct-2507",
            "base_model:\n  path: ../../../etc\n  served_name: base",
        ),
    )
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "error: base model folder '../../../etc' resolves to " in out
        and ", outside the repository" in out
    )


# -- the whole pipeline, fuzzed: deployment-shaped documents with hostile values in every slot -------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    NASTY,
    st.sampled_from(
        [
            "A10G",
            "H100:2",
            "0.11.2",
            "0.32.0",
            "none",
            "Qwen/Qwen3-4B-Instruct-2507",
            "../x",
            "-1",
            "1e400",
        ]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "repo",
                    "path",
                    "name",
                    "type",
                    "count",
                    "secret",
                    "api_key",
                    "proxy",
                    "max-model-len",
                    "x",
                ]
            ),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
)
_DEPLOYMENT = st.fixed_dictionaries(
    {},
    optional={
        "name": _VALUES,
        "base_model": _VALUES,
        "adapters": _VALUES,
        "gpu": _VALUES,
        "vllm": st.fixed_dictionaries(
            {"version": _VALUES},
            optional={
                "args": st.dictionaries(st.text(min_size=1, max_size=12), _VALUES, max_size=3)
            },
        ),
        "image": _VALUES,
        "scaling": _VALUES,
        "cold_start": _VALUES,
        "auth": _VALUES,
        "secrets": _VALUES,
        "smoke": _VALUES,
    },
)


_VALID = {
    "base_model": {"repo": "Qwen/Qwen3-4B-Instruct-2507"},
    "gpu": "A10G",
    "vllm": {"version": "0.11.2", "args": {"max-model-len": 4096}},
    "adapters": [{"name": "a", "repo": "org/a"}],
    "auth": "none",
    "cold_start": {"gpu_snapshot": True},
    "scaling": {"min_containers": 1},
}
_SLOTS = [
    ("base_model", "repo"),
    ("base_model", "served_name"),
    ("base_model", "revision"),
    ("gpu",),
    ("vllm", "version"),
    ("vllm", "args", "max-model-len"),
    ("vllm", "args", "enforce-eager"),
    ("adapters", 0, "name"),
    ("adapters", 0, "revision"),
    ("auth",),
    ("scaling", "min_containers"),
    ("scaling", "startup_timeout"),
    ("cold_start", "prefetch"),
    ("smoke", "expect"),
    ("image", "env"),
    ("name",),
]


def _mutated(changes):
    import copy

    document = copy.deepcopy(_VALID)
    for path, value in changes:
        target = document
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
        target[path[-1]] = value
    return document


_NEAR_VALID = st.lists(
    st.tuples(
        st.sampled_from(_SLOTS),
        _VALUES
        | st.sampled_from(
            [4096, True, False, "main", "qwen", "L4", "0.32.0", {"proxy": True}, {"a": "x"}]
        ),
    ),
    min_size=1,
    max_size=2,
).map(_mutated)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=st.one_of(_DEPLOYMENT, _NEAR_VALID, _NEAR_VALID, _NEAR_VALID, st.just(_VALID)))
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


@settings(max_examples=150, deadline=None)
@given(one=NASTY, other=NASTY)
def test_any_change_of_a_value_changes_the_code_hash(one, other):
    """The deploy hash leaves comments out: a `#` inside a value must never be taken for one."""
    from deployer.render.app import code_hash

    def app(value):
        return (
            f"# header\nENV = {literal({'VALUE': value})}  # why\nFLAGS = "
            f"{literal(['--x', value] * 20, indent=0)}\n"
        )

    assert (code_hash(app(one)) == code_hash(app(other))) == (one == other)


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


# -- found in the second review ------------------------------------------------------------------


def test_a_credential_http_refuses_is_never_quoted(cli, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-live-SENTINEL\n")
    code, out, err = cli("smoke", "http://127.0.0.1:9", "--timeout", "1")
    assert code == 1 and "SENTINEL" not in out + err and "a credential" in out


@pytest.mark.parametrize("value", ["nan", "0", "-5", "inf"])
def test_timeouts_must_be_finite_and_positive(cli, value):
    assert cli("smoke", "http://127.0.0.1:9", "--timeout", value)[0] == 2


def test_a_deployment_file_linked_out_of_the_repository_is_not_read(project, cli, monkeypatch):
    secret = project.root.parent / f"{project.root.name}-outside.yaml"
    secret.write_text("MODAL_TOKEN_SECRET=as-SENTINEL\n")
    (project.deployments / "env.yaml").symlink_to(secret)
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


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
        # From the bypass hunt: 3 GB in 4 s, RecursionError, and an app too large to be one.
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
    import time

    from deployer.render import app as render

    monkeypatch.setattr(render, "RENDER_SECONDS", 1)
    project.deployment("a")
    project.write(
        "templates/modal_app.py.j2",
        "ok\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
    )
    start = time.monotonic()
    code, _, err = cli("render")
    assert time.monotonic() - start < 10
    assert (
        code == 1
        and "templates/modal_app.py.j2:2: error: rendering took longer than 1 s; does a "
        "loop never end?"
        in err
    )


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


def test_a_backtracking_smoke_pattern_cannot_hang_the_smoke_check():
    from deployer.core.patterns import PatternTooSlow, any_match

    # Python's re takes minutes on this (23 s at 41 characters, doubling with each one more).
    pattern, reply = r"^(a|aa)+$", "a" * 60 + "b"
    started = time.monotonic()
    with pytest.raises(PatternTooSlow, match="took over 0.5 s"):
        any_match(pattern, [reply], seconds=0.5)
    assert time.monotonic() - started < 5
    assert any_match(pattern, ["a" * 60]) is True


def test_a_pattern_whose_matching_eats_memory_stops_at_the_matchers_limit():
    from deployer.core.patterns import PatternTooSlow, any_match

    # Each repeat of the group keeps backtracking state: about 1.5 GiB for this 6 MB reply.
    with pytest.raises(PatternTooSlow, match="MemoryError"):
        any_match(r"(?:(a)|b)*c", ["ab" * 3_000_000])


def test_a_pattern_slow_to_compile_is_a_finding_not_a_wait(project):
    # About 7 ms of compiling per class: this one took 28 s in-process before.
    slow = "(?i)" + "[\\u0100-\\U0010ffff]" * 3000
    project.deployment(
        "d", MINIMAL + f'smoke: {{expect: {{Qwen/Qwen3-4B-Instruct-2507: "{slow}"}}}}\n'
    )
    started = time.monotonic()
    (finding,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "smoke.bad-pattern"
    ]
    assert "compiling it took over 2 s" in finding.message and time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("pattern", "reply", "matches"),
    [
        (r"(e4)\1", "1. e4e4", True),
        (r"(?<=1\. )Nf3", "1. Nf3", True),
        (r"\d{,2}-", "x-", True),  # 0 to 2 digits, as in Python; RE2 would want the text "{,2}"
        (r"^Ne5\Z", "Ne5\n", False),
    ],
)
def test_smoke_patterns_are_pythons_regular_expressions(pattern, reply, matches):
    from deployer.core.patterns import any_match

    assert any_match(pattern, [reply]) is matches


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(e4", "missing ), unterminated subpattern at position 0"),
        ("a{2,1}", "min repeat greater than max repeat at position 2"),
    ],
)
def test_smoke_patterns_python_cannot_compile_are_findings(project, pattern, reason):
    project.deployment(
        "d", MINIMAL + f'smoke: {{expect: {{Qwen/Qwen3-4B-Instruct-2507: "{pattern}"}}}}\n'
    )
    (finding,) = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "smoke.bad-pattern"
    ]
    assert finding.message.endswith(reason) and finding.line == 8


@pytest.mark.parametrize("shard", ["../../secret.txt", "/proc/self/environ", "linked.safetensors"])
def test_a_weight_index_cannot_make_validate_read_outside_the_model_folder(project, cli, shard):
    secret = project.root.parent / f"{project.root.name}-secret.txt"
    secret.write_bytes(b"hf_SENTINEL_token")
    model = local_model(project)
    if shard == "linked.safetensors":
        (model / "linked.safetensors").symlink_to(secret)
    (model / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {"x": shard.replace("../../secret.txt", f"../../../{secret.name}")}}
        )
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    # The first 8 bytes as a number ("header of N bytes") would leak them.
    assert (
        str(int.from_bytes(b"hf_SENTI", "little")) not in out + err and "SENTINEL" not in out + err
    )
    # A link out of the repository keeps the whole folder from being read.
    assert (
        "links out of the repository"
        if shard == "linked.safetensors"
        else "outside the model folder"
    ) in out


def test_a_deployments_folder_linked_out_of_the_repository_is_not_read(
    project, cli, tmp_path_factory
):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    (project.root / "linked").symlink_to(outside)
    code, out, _ = cli("validate", "linked")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


@pytest.mark.parametrize("named", ["deployments", "deployments/creds.yaml"])
def test_a_linked_folder_with_a_git_folder_of_its_own_does_not_become_the_repository(
    project, cli, tmp_path_factory, named
):
    # The link's own .git would make "the repository" wherever the link points.
    (project.root / ".git").mkdir()
    outside = tmp_path_factory.mktemp("outside")
    (outside / ".git").mkdir()
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    project.deployments.rmdir()
    project.deployments.symlink_to(outside)
    code, out, _ = cli("validate", named)
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


def test_a_deployment_file_named_on_the_command_line_is_not_read_through_a_link_out(project, cli):
    secret = project.root.parent / f"{project.root.name}-named.yaml"
    secret.write_text("token: hf_SENTINEL\n")
    (project.deployments / "b.yaml").symlink_to(secret)
    code, out, _ = cli("validate", "deployments/b.yaml")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


def test_links_above_the_repository_are_the_machines_layout(tmp_path):
    # macOS's /tmp -> /private/tmp: a repository reached through a link above it is still itself.
    from deployer.sources.folders import outside_repository

    (tmp_path / "real" / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "real" / "repo" / "deployments").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    folder = tmp_path / "alias" / "repo" / "deployments"
    assert outside_repository(folder / "m", folder) is None
    assert outside_repository(tmp_path / "real" / "elsewhere", folder) == (
        tmp_path / "real" / "repo"
    )


def test_a_link_chain_too_long_for_realpath_is_not_taken_for_a_path_inside(tmp_path):
    from deployer.core.paths import real, within

    (tmp_path / "repo").mkdir()
    (tmp_path / "secret.txt").write_text("SENTINEL")
    chain = link_chain(tmp_path / "repo")
    sneaky = tmp_path / "repo" / chain / ".." / "secret.txt"
    assert sneaky.read_text() == "SENTINEL"  # the kernel follows it out of repo/
    assert Path(os.path.realpath(sneaky)).is_relative_to(tmp_path / "repo")  # realpath says inside
    assert real(sneaky) is None and not within(sneaky, tmp_path / "repo")


def test_a_link_chain_in_a_model_folder_is_refused_and_never_read(project, cli, monkeypatch):
    from deployer.deploy.desired import folder_hash

    secret = project.root.parent / f"{project.root.name}-id_rsa"
    secret.write_text("SENTINEL")
    model = local_model(project, "{}")
    chain = link_chain(project.root)
    (model / "notes.txt").symlink_to(f"../../{chain}/../{secret.name}")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert code == 1 and "notes.txt links out of the repository" in out and "SENTINEL" not in out
    # plan hashes a git ref's tree without validating it: the link is named there, not read (a
    # chain to /proc/kmsg would block forever), so what it leads to does not change the hash.
    before = folder_hash(model)
    secret.write_text("SENTINEL, changed")
    assert folder_hash(model) == before


def test_a_deployments_folder_reached_through_a_link_chain_is_not_read(
    project, cli, tmp_path_factory
):
    outside = project.root.parent / f"{project.root.name}-elsewhere"
    outside.mkdir()
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    chain = link_chain(project.root)
    code, out, _ = cli("validate", f"{project.root}/{chain}/../{outside.name}")
    assert code == 1 and "SENTINEL" not in out and "cannot be followed" in out


@pytest.mark.parametrize("target", [".env", ".git/config"])
def test_a_deployment_file_linked_inside_the_repository_is_not_read(project, cli, target):
    (project.root / ".git").mkdir()
    (project.root / target).write_text("OPENAI_API_KEY=sk-SENTINEL\n")
    (project.deployments / "dotenv.yaml").symlink_to(f"../{target}")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out
    assert (
        "is a link; deployment files are read only as plain files"
        if target == ".env"
        else "inside the repository's .git folder"
    ) in out


def test_a_model_folder_may_not_link_into_the_git_folder(project, cli):
    (project.root / ".git").mkdir()
    (project.root / ".git" / "config").write_text(
        "[http]\n  extraheader = AUTHORIZATION: basic SENTINEL\n"
    )
    model = local_model(project, "{}")
    (model / "git-config").symlink_to("../../.git/config")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert code == 1 and "git-config links out of the repository" in out and "SENTINEL" not in out


def test_an_adapter_folder_that_is_refused_is_not_read_either(project, cli):
    outside = project.root.parent / f"{project.root.name}-adapter_config.json"
    outside.write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "bias": "all-SENTINEL"})
    )
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").symlink_to(outside)
    project.deployment("x", MINIMAL + "adapters:\n  - {name: a, path: ../adapters/a}\n")
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "adapter_config.json links out of the repository" in out
        and "SENTINEL" not in out
    )


@pytest.mark.parametrize("link", ["env", "modal_app.py.j2"])
def test_project_templates_are_read_only_as_plain_files(project, cli, link):
    secret = project.root.parent / f"{project.root.name}-leak"
    secret.write_text("SENTINEL")
    project.deployment("a")
    shipped = (Path(__file__).parent.parent / "templates" / "modal_app.py.j2").read_text()
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
    code, out, err = cli(
        "smoke", "a", "--timeout", "1"
    )  # /dev/zero filled memory, /proc/kmsg blocked
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


def test_render_never_writes_through_a_linked_output_folder(project, cli, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside-build")
    project.deployment("a")
    (project.root / "build").symlink_to(outside)
    code, _, err = cli("render")
    assert code == 1 and "is a link to" in err and "--out" in err and list(outside.iterdir()) == []


def _local_adapter_deployment(project) -> Path:
    from .tiny_model import build_base_model, build_lora_adapter

    base = build_base_model(project.root / "models" / "tiny")
    adapter = build_lora_adapter(project.root / "adapters" / "a", str(base), 8, seed=1)
    project.deployment(
        "x",
        "base_model: {path: ../models/tiny, served_name: tiny}\nadapters:\n  - {name: "
        "a, path: ../adapters/a}\ngpu: T4\nvllm: {version: '0.32.0'}\nauth: {proxy: "
        "true}\n",
    )
    return adapter


def test_files_linked_out_of_the_repository_inside_an_adapter_folder_are_refused(
    project, cli, tmp_path_factory
):
    adapter = _local_adapter_deployment(project)
    secret = tmp_path_factory.mktemp("home") / "id_rsa"
    secret.write_text("PRIVATE-SENTINEL")
    (adapter / "extra").symlink_to(secret)
    os.mkfifo(adapter / "pipe")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out
    assert "adapter 'a' folder '../adapters/a': extra links out of the repository" in out
    assert "adapter 'a' folder '../adapters/a': pipe is not a plain file or folder" in out


def test_deploy_hashes_never_read_through_a_link_to_proc(tmp_path):
    """A git ref's tree is hashed without being validated: a committed link to /proc/kmsg (a read
    that blocks once the log is drained) or /proc/self/pagemap (EINVAL) is named, not read."""
    from deployer.deploy.desired import folder_hash

    hashes = set()
    for target in ("/proc/kmsg", "/proc/self/pagemap", "/proc/self/environ"):
        folder = tmp_path / target.replace("/", "_")
        folder.mkdir()
        (folder / "extra").symlink_to(target)
        hashes.add(folder_hash(folder))
    assert len(hashes) == 3


def test_a_server_that_drips_its_reply_cannot_hold_a_smoke_request():
    import socket
    import threading
    import time

    from deployer.local.smoke import Connection, HttpError, request

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def drip():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while not stop.is_set():  # one byte every 0.3 s: each read is quick, the reply never ends
            try:
                conn.sendall(b"x")
            except OSError:
                break
            time.sleep(0.3)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(HttpError, match="no complete reply within 2 s"):
            request(
                Connection(f"http://127.0.0.1:{listener.getsockname()[1]}"),
                "GET",
                "/v1/models",
                timeout=2,
            )
        assert time.monotonic() - start < 6
    finally:
        stop.set()
        listener.close()


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


def test_an_app_folder_holding_files_render_did_not_write_is_refused(project, cli):
    # `modal deploy build/a/app.py` puts build/a first on the import path: shlex.py would run.
    project.deployment("a")
    project.write("build/a/shlex.py", "raise SystemExit('planted')\n")
    code, _, err = cli("render")
    assert code == 1 and "holds shlex.py, which the deployer did not write" in err
    (project.root / "build" / "a" / "shlex.py").unlink()
    assert cli("render")[0] == 0


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


def _safetensors(path: Path, header: dict) -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


@pytest.mark.parametrize("shape", [[2**53] * 40, [2**53] * 200_000, [2**30, 2**30]])
def test_a_tensor_shape_beyond_any_model_leaves_fit_unchecked(project, cli, shape):
    # [2**53] * 40 ended in "internal error: OverflowError"; 200,000 dimensions took a minute.
    model = local_model(project)
    _safetensors(
        model / "model.safetensors",
        {"model.embed_tokens.weight": {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}},
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    assert "internal error" not in err and "has no valid shape" in out


def test_shards_linked_to_one_file_read_its_header_once(project, monkeypatch):
    import deployer.sources.base_model as basemodel

    model = local_model(project)
    _safetensors(
        model / "model.safetensors",
        {
            "model.layers.0.self_attn.q_proj.weight": {
                "dtype": "BF16",
                "shape": [64, 64],
                "data_offsets": [0, 8192],
            }
        },
    )
    names = [f"s{i}.safetensors" for i in range(5)]
    for name in names:
        (model / name).symlink_to("model.safetensors")
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"t{i}": name for i, name in enumerate(names)}})
    )
    for name in (
        "h0.safetensors",
        "h1.safetensors",
    ):  # hard links too (a ref's export writes one per name)
        os.link(model / "model.safetensors", model / name)
    (model / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "weight_map": {
                    f"t{i}": name
                    for i, name in enumerate(names + ["h0.safetensors", "h1.safetensors"])
                }
            }
        )
    )
    reads = []
    real_read = basemodel._header_bytes
    monkeypatch.setattr(
        basemodel, "_header_bytes", lambda path: reads.append(path) or real_read(path)
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    project.deployment(
        "y",
        "base_model: {path: ../models/m, served_name: m}\ngpu: L4\nvllm: {version: "
        "'0.11.2'}\nauth: {proxy: true}\n",
    )
    check_paths([project.deployments])
    assert len(reads) == 1  # eight names, two deployments: one read


def test_a_path_with_a_name_too_long_is_a_schema_error(project, cli):
    project.deployment(
        "x",
        f"base_model: {{path: ../{'a' * 300}, served_name: m}}\ngpu: A10G\nvllm: "
        f"{{version: '0.11.2'}}\nauth: {{proxy: true}}\n",
    )
    code, out, err = cli("validate")
    assert code == 1 and "internal error" not in err and "each name at most 255 characters" in out


def test_an_adapter_trained_on_a_path_too_long_is_just_not_found(project, cli):
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": 8,
                "lora_alpha": 16,
                "target_modules": ["q_proj"],
                "base_model_name_or_path": "/" + "a" * 300,
            }
        )
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    local_model(project)
    project.deployment(
        "x",
        "base_model: {path: ../models/m, served_name: m}\nadapters:\n  - {name: a, "
        "path: ../adapters/a}\ngpu: A10G\nvllm: {version: '0.11.2'}\nauth: {proxy: "
        "true}\n",
    )
    code, out, err = cli("validate")
    assert "internal error" not in err


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


def test_a_quoted_source_line_is_cut_around_its_column_and_escaped(project, cli):
    project.write(
        "deployments/x.yaml",
        "gpu: A10G\nunknown_key: " + "v" * 5000 + " SENTINEL\nbase_model: {repo: a/b}\n",
    )
    project.write("deployments/y.yaml", "gpu: A10G\n\x1b[2Jname: y\n")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out and max(len(line) for line in out.splitlines()) < 400
    assert "\x1b" not in out


def test_a_project_template_that_is_not_utf8_is_an_error(project, cli):
    project.deployment("a")
    project.write("templates/modal_app.py.j2", "")
    (project.root / "templates" / "modal_app.py.j2").write_bytes(b"x = '\xff\xfe'\n")
    code, _, err = cli("render")
    assert code == 1 and "a template is not UTF-8 text" in err and "internal error" not in err


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
    # 28,885 unknown flags took 52 s of did-you-mean; 25,000 adapters 84 s of folder walks.
    base = (
        MINIMAL
        if section.startswith("adapters")
        else MINIMAL.replace('vllm:\n  version: "0.11.2"\n', "")
    )
    project.deployment("x", base + section)
    code, out, _ = cli("validate")
    assert code == 1 and message in out and len(out) < 2000


def test_comments_in_the_rendered_app_carry_no_bidi_overrides(project):
    from deployer.render.app import render

    folder = project.root / "models" / "x\u202e\u2066yp.lave"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    project.deployment(
        "a",
        "base_model: {path: '../models/x\u202e\u2066yp.lave', served_name: m}\ngpu: "
        "A10G\nvllm: {version: '0.11.2'}\nauth: {proxy: true}\n",
    )
    checked = check_paths([project.deployments])
    source = render(checked.deployments[0], Path("build")).source
    comments = [line for line in source.splitlines() if line.lstrip().startswith("#")]
    assert not any(
        ch in line
        for line in comments
        for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )


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


def test_shard_headers_beyond_any_models_are_not_parsed(project, cli):
    # One 99 MB header took 18 s and 1.2 GB; five names linked to it, 64 s.
    model = local_model(project)
    names = [f"s{i}.safetensors" for i in range(5)]
    for name in names:  # each just under the one-header cap: together over the model's
        (model / name).write_bytes((15 * 1024 * 1024).to_bytes(8, "little") + b" " * 16)
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"t{i}": name for i, name in enumerate(names)}})
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    assert "internal error" not in err and "headers add up to more than 64 MiB" in out


def test_a_deployments_folder_that_is_a_bare_repository_is_not_used_as_one(
    project, cli, monkeypatch
):
    # git -C deployments took the committed HEAD/config/objects/refs for a repository: `git archive`
    # ran its smudge filter, and its remote named the project.
    import subprocess

    from .conftest import git, git_commit

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


def test_patterns_share_one_time_budget_per_check(project):
    # 20 aliases of one pattern that takes 3 s to compile took 40 s; 1,001 of them would take 2,000.
    slow = "(?i)" + "[\\u0100-\\U0010ffff]" * 1000
    expect = "".join(f"    m{i}: *p\n" if i else f'    m{i}: &p "{slow}"\n' for i in range(30))
    project.deployment("d", MINIMAL + "smoke:\n  expect:\n" + expect)
    started = time.monotonic()
    found = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "smoke.bad-pattern"
    ]
    assert len(found) == 30 and time.monotonic() - started < 20


def test_a_budget_inside_another_spends_the_outer_one():
    # A plan checks the deployments of several commits; each check opening a fresh budget made
    # the total grow with the number of commits.
    from deployer.core import patterns

    with patterns.budget(0), patterns.budget(100):
        with pytest.raises(
            patterns.PatternTooSlow, match="the time for checking patterns is spent"
        ):
            patterns.any_match("a", ["a"])
    with patterns.budget(100):
        assert patterns.any_match("a", ["a"])


def test_a_defaults_mapping_of_many_keys_merges_in_linear_time(project, cli):
    # Merging scanned every position per key: 10,000 keys took 33 s.
    project.write(
        "deployments/_defaults.yaml", "x:\n" + "".join(f"  k{i}: 1\n" for i in range(30_000))
    )
    project.deployment("a", MINIMAL + "x: {}\n")
    started = time.monotonic()
    code, out, _ = cli("validate")
    assert code == 1 and "unknown key 'x'" in out and time.monotonic() - started < 20


OVERRIDES = "  args:\n    hf-overrides: {" + ", ".join(f"k{i}: 0" for i in range(600)) + "}\n"


@pytest.mark.parametrize(("limit", "value", "defaults", "stops_at"), [
    ("MAX_RUN_VALUES", 2_000, "", "d3.yaml"),  # 600-odd values a file: the fourth goes over
    ("MAX_RUN_VALUES", 2_000, OVERRIDES, "d2.yaml"),  # defaults count once per deployment they reach
    ("MAX_RUN_FILES", 3, "", "d3.yaml"),
    ("MAX_RUN_BYTES", 12_000, "", "d2.yaml"),  # about 5 KB a file
    # one long value in the defaults went into every app: render wrote 4.3 GB for 5,000 small files
    ("MAX_RUN_BYTES", 12_000, "LONG", "d1.yaml"),
])  # fmt: skip
def test_one_big_file_under_many_names_stops_at_the_runs_budget(
    project, monkeypatch, limit, value, defaults, stops_at
):
    # git stores a file once whatever its names: 30 names for one 880 KB file took 129 s and 2 GB,
    # each loaded, merged and checked again; a large _defaults.yaml did the same through 100 small files.
    import deployer.checks.pipeline

    monkeypatch.setattr(deployer.checks.pipeline, limit, value)
    body = (
        MINIMAL.replace('version: "0.11.2"', 'version: "0.11.2"\n' + OVERRIDES)
        if not defaults
        else MINIMAL
    )
    if defaults == "LONG":
        project.write(
            "deployments/_defaults.yaml", f"image:\n  env: {{PYTHONUNBUFFERED: '{'1' * 5000}'}}\n"
        )
    elif defaults:
        project.write("deployments/_defaults.yaml", "vllm:\n" + defaults)
    for i in range(6):
        project.deployment(f"d{i}", body)
    checked = check_paths([project.deployments])
    (error,) = checked.diagnostics
    assert (error.file, error.line, error.rule, error.is_error) == (
        f"deployments/{stops_at}",
        1,
        "files.too-many",
        True,
    )
    assert (
        "the files after this one are not checked" in error.message
        and "fewer files or folders" in error.hint
    )
    assert f"deployments/d{int(stops_at[1]) + 1}.yaml" not in checked.files


def test_text_repeated_by_aliases_counts_as_often_as_it_is_rendered(project, monkeypatch):
    # 110 aliases of one 8.8 KB string per file: 32 MB of YAML rendered 3 GB of apps.
    import deployer.checks.pipeline

    monkeypatch.setattr(deployer.checks.pipeline, "MAX_RUN_CHARS", 250_000)
    aliases = "".join(f"    E{i}: *x\n" for i in range(1, 50))
    for i in range(4):
        project.deployment(
            f"d{i}", MINIMAL + f"image:\n  env:\n    E0: &x '{'1' * 2000}'\n" + aliases
        )
    assert (
        project.deployments / "d0.yaml"
    ).stat().st_size < 3000  # 100,000 characters once expanded
    errors = [
        d for d in check_paths([project.deployments]).diagnostics if d.rule == "files.too-many"
    ]
    assert [(e.file, e.line) for e in errors] == [
        ("deployments/d2.yaml", 1)
    ] and "aliases expanded" in errors[0].message


def test_one_adapter_folder_named_by_many_adapters_is_read_walked_and_resolved_once(
    project, monkeypatch
):
    import deployer.sources.folders as sources
    from deployer.core import budget, paths

    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "x": [{}] * 100_000})
    )
    for i in range(50):
        (adapter / f"f{i}").write_text("")
    project.deployment(
        "x",
        MINIMAL
        + "adapters:\n"
        + "".join(f"  - {{name: a{i}, path: ../adapters/a}}\n" for i in range(300)),
    )
    walks = []
    real_walk = sources.walk
    monkeypatch.setattr(sources, "walk", lambda folder: walks.append(folder) or real_walk(folder))
    resolved, real_real = [], paths._real
    monkeypatch.setattr(paths, "_real", lambda path: resolved.append(path) or real_real(path))
    opened, real_open = [], budget._read_limited
    monkeypatch.setattr(
        budget, "_read_limited", lambda path, limit: opened.append(path) or real_open(path, limit)
    )
    check_paths([project.deployments])
    assert len(walks) == 1 and len(opened) == 1
    assert len(resolved) < 100, f"{len(resolved)} link resolutions for 300 adapters on one folder"


def test_a_huge_value_quoted_from_an_adapter_config_is_cut_in_every_finding(project, cli):
    # 300 adapters naming a config with a 3 MB modules_to_save printed 1 GB (and 3 GB in memory).
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": 8,
                "lora_alpha": 16,
                "target_modules": ["q_proj"],
                "modules_to_save": ["A" * 3_000_000],
                "bias": "B" * 500_000,
            }
        )
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    project.deployment(
        "x",
        MINIMAL
        + "adapters:\n"
        + "".join(f"  - {{name: a{i}, path: ../adapters/a}}\n" for i in range(300)),
    )
    code, out, _ = cli("validate")
    assert code == 1 and "saves full modules (AAAA" in out and "trains biases (bias: 'BBBB" in out
    assert len(out) < 2_000_000 and "2,999,0" in out  # "... (2,999,0NN more characters)"


def test_a_folder_nested_too_deep_is_refused_not_a_crash(project, cli):
    # Python 3.11's os.walk and Path.rglob recurse once per level: 1,100 levels were an internal
    # error in every command. Walks are loops now and stop past 100 levels (150 here: pytest's own
    # clean-up recurses too).
    adapter = project.root / "adapters" / "a"
    (adapter / ("d/" * 150)).mkdir(parents=True)
    (adapter / ("d/" * 150) / "f").write_text("x")
    (adapter / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]})
    )
    project.deployment("x", MINIMAL + "adapters: [{name: a, path: ../adapters/a}]\n")
    code, out, err = cli("validate")
    assert code == 1 and "internal error" not in err
    assert "is nested more than 100 folders deep" in out


def test_a_path_spelled_through_a_link_and_back_is_judged_as_it_leads(
    project, cli, tmp_path_factory
):
    # The per-run memo keyed real() by abspath, which folds `out/../m` into `m` although `out`
    # is a link leading elsewhere: with a.yaml checked first, b.yaml's path passed.
    outside = tmp_path_factory.mktemp("outside")
    (outside / "m").mkdir()
    (project.root / "models" / "m").mkdir(parents=True)
    (project.root / "models" / "out").symlink_to(outside / "m")
    project.deployment("a", MINIMAL + "adapters: [{name: a, path: ../models/m}]\n")
    project.deployment("b", MINIMAL + "adapters: [{name: a, path: ../models/out/../m}]\n")
    code, out, _ = cli("validate")
    assert "b.yaml" in out and "outside the repository" in out, out


def test_a_folder_holding_the_repositorys_git_folder_is_never_uploaded(project, cli):
    # path: .. (the repository itself) would upload .git/config with checkout's token.
    (project.root / ".git").mkdir()
    (project.root / "config.json").write_text(LLAMA_CONFIG)
    project.write("models/m/.git/config", "[remote]\n")
    project.write("models/m/config.json", LLAMA_CONFIG)
    for path in ("..", "../models/m"):
        project.deployment(
            "x",
            f"base_model: {{path: '{path}', served_name: m}}\ngpu: A10G\nvllm: {{version: "
            f"'0.11.2'}}\nauth: {{proxy: true}}\n",
        )
        code, out, _ = cli("validate")
        assert code == 1 and ".git is a git folder" in out, out


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
    from deployer.render.app import project_templates

    for _ in range(3):
        assert (
            render(
                checked.deployments[0], Path("build"), project_templates(project.deployments)
            ).source
            == f"x = {len(before) + 1}\n"
        )
    assert argv.WEIGHT_FILE_KINDS == before


def test_a_ref_export_keeps_no_link_leading_out_of_it(project, tmp_path_factory):
    # The tar filter judged `a` before `y` existed; after extraction `a` led to /etc.
    from deployer.deploy.commit_files import CommitFiles

    from .conftest import git, git_commit

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

    from .conftest import git, git_commit

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
    from .conftest import git, git_commit

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
    # 30 links to one 200 MB object (a 1 MB repository) took 11.8 GB: every link target was read
    # whole before its size was looked at.
    import tracemalloc

    from deployer.deploy.commit_files import CommitFiles

    from .conftest import git

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
    # Git stores one deep folder once however often a tree names it: 8 names of a 20,000-deep
    # folder took 3.3 GB when every prefix of every path was kept.
    import tracemalloc

    from deployer.deploy.commit_files import CommitFiles

    from .conftest import git

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
    # 20,000 chained links took two minutes of realpath; a path is followed through at most 40.
    from deployer.deploy.commit_files import MAX_HOPS, CommitFiles, RefError

    from .conftest import git

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
    CommitFiles(project.root, empty, dest).add([dest])  # an empty link target was a KeyError
    assert (dest / "deployments" / "x.yaml").is_file() and not os.path.lexists(dest / "empty")

    blob = link("deployments")
    many = _crafted_commit(project, [f"120000 blob {blob}\tm{i}" for i in range(10_001)])
    with pytest.raises(RefError, match="holds 10,001 links"):
        CommitFiles(project.root, many, tmp_path_factory.mktemp("export"))


def test_a_tree_naming_one_entry_twice_cannot_place_a_link_leading_out(project, tmp_path_factory):
    # `x` as a folder (holding a link) and again as a link: placing x/l made a real folder x, so
    # the link x was never placed, but the table judging m still followed it: m -> x/../../../etc
    # looked inside and was placed, leading to /etc.
    from deployer.deploy.commit_files import CommitFiles

    from .conftest import git

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
    # 240 KB of objects can list 5 million files: the whole listing was held (2.6 GB, 80 s) though
    # a plan reads a few folders. Only links are kept from the full listing; files are listed
    # under the folders asked for; past MAX_ENTRIES names the commit is refused.
    import tracemalloc

    import deployer.deploy.commit_files as commit_files
    from deployer.deploy.commit_files import CommitFiles, RefError

    from .conftest import git

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
    # export-subst in the commit's .gitattributes made `git archive` expand every $Format:%B$ to
    # the commit message: 3 MB of repository became a 2.8 GB file. Files are read as stored.
    from deployer.deploy.commit_files import CommitFiles

    from .conftest import git, git_commit

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

    from .conftest import git, git_commit

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


def test_a_planted_fifo_lock_file_is_a_lock_error(tmp_path):
    from deployer.deploy.apply import LockError, apply_lock

    (tmp_path / "build").mkdir()
    os.mkfifo(tmp_path / "build" / ".deployer-apply.lock")
    with pytest.raises(LockError, match="not a plain file"):
        with apply_lock(tmp_path / "build"):
            pass


def test_a_tensor_name_of_thousands_of_parts_is_no_models(project, cli):
    # Every dotted ending of one 35,000-part name: 1.2 GB and 8 s.
    model = local_model(project)
    _safetensors(
        model / "model.safetensors",
        {
            ".".join(["a"] * 35_000) + ".weight": {
                "dtype": "F16",
                "shape": [1],
                "data_offsets": [0, 2],
            }
        },
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    assert "internal error" not in err and "is no model's" in out


def test_what_deployments_share_is_worked_out_once_per_run(project, monkeypatch):
    import deployer.deploy.desired as desired_module
    import deployer.sources.base_model as basemodel
    from deployer.deploy.desired import desired, project_for

    local_model(project)
    for name in "abcde":
        project.deployment(name, LOCAL_MODEL_DEPLOYMENT)
    reads, hashes = [], []
    real_read, real_hash = basemodel.read_base_model, desired_module.folder_hash
    monkeypatch.setattr(
        basemodel, "read_base_model", lambda source: reads.append(source) or real_read(source)
    )
    monkeypatch.setattr(
        desired_module, "folder_hash", lambda folder: hashes.append(folder) or real_hash(folder)
    )
    checked = check_paths([project.deployments])
    desired(checked.deployments, Path("build"), project_for(project.deployments))
    assert len(reads) == 1 and len(hashes) == 1


@pytest.mark.parametrize("revision", ["pr/../../../../../../proc/kmsg", "a//b", "main/"])
def test_a_revision_cannot_climb_out_of_the_hugging_face_cache(project, cli, revision):
    # try_to_load_from_cache opens refs/<revision>: pr/../../.. led anywhere (/proc/kmsg blocked).
    project.deployment(
        "x",
        MINIMAL.replace(
            "repo: Qwen/Qwen3-4B-Instruct-2507",
            f"repo: Qwen/Qwen3-4B-Instruct-2507\n  revision: '{revision}'",
        ),
    )
    code, out, _ = cli("validate")
    assert code == 1 and "invalid base_model.revision" in out and "no '..'" in out


def test_absurd_lora_sizes_leave_the_fit_to_the_flag_check(project, cli):
    # max-loras x max-lora-rank of 1e300 each ended every command in "internal error: OverflowError".
    local_model(project)
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]})
    )
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    project.deployment(
        "x",
        "base_model: {path: ../models/m, served_name: m}\nadapters:\n  - {name: a, "
        "path: ../adapters/a}\ngpu: A10G\nvllm:\n  version: '0.11.2'\n  args: "
        "{max-loras: 1.0e+300, max-lora-rank: 1.0e+300}\nauth: {proxy: true}\n",
    )
    for command in (["validate"], ["fit", "x"], ["render"]):
        code, out, err = cli(*command)
        assert "internal error" not in err, (command, err)


def test_a_hostile_servers_status_line_reaches_the_terminal_escaped():
    # "waiting for .../health: <why>" quoted the server's status line raw: ESC, CR and BEL could
    # rewrite what the terminal (or a CI log) shows.
    import socket
    import threading

    from deployer.local.smoke import Connection, wait_healthy

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def answer():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"XTTP/1.1 200 OK \x1b[2K\r\x1b[32m  ok  health \x1b]0;pwned\x07\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        result = wait_healthy(
            Connection(f"http://127.0.0.1:{listener.getsockname()[1]}"), timeout=1.5, interval=0.5
        )
    finally:
        listener.close()
    assert not result.ok and "BadStatusLine" in result.detail and "\\x1b[2K\\r" in result.detail
    assert not any(c in result.detail for c in "\x1b\r\x07\n"), (
        result.detail
    )  # progress lines quote the same text


def test_plan_shows_long_values_briefly_and_tells_them_apart(project, modal_world, cli):
    from .conftest import git_commit

    long = lambda value: MINIMAL.replace(
        '  version: "0.11.2"\n', f'  version: "0.11.2"\n  args: {{response-role: {value}}}\n'
    )
    project.deployment("alpha", long("a" * 200_000))
    git_commit(project.root, "a long value")
    project.deployment("alpha", long("a" * 199_999 + "b"))
    code, out, _ = cli("plan", "--against", "HEAD")
    assert len(out) < 5_000, len(out)
    assert (
        out.count("200,000 characters, sha256") == 2
        and len(set(re.findall(r"sha256 ([0-9a-f]{12})", out))) == 2
    )


def test_values_cannot_write_links_or_images_into_the_plan_summary():
    from deployer.deploy.plan import md

    assert (
        md("![x](https://e.example/p.png) [click](https://e.example) `code` *b* |")
        == "\\!\\[x\\](https://e.example/p.png) \\[click\\](https://e.example) \\`code\\` "
        "\\*b\\* \\|"
    )


def test_a_link_in_a_model_folder_to_an_ignored_file_elsewhere_in_the_repository_is_refused(
    project, cli
):
    # models/m/chat_template.jinja -> ../../.env passed (inside the repository), and apply
    # uploads what links point at: the operator's .env would have become the chat template.
    project.write(".gitignore", ".env\n")
    project.write(".env", "HF_TOKEN=hf_sentinel\n")
    project.write("models/m/config.json", "{}")
    project.write("models/m/store/tokenizer.json", "{}")
    (project.root / "models/m/tokenizer.json").symlink_to(
        "store/tokenizer.json"
    )  # inside the folder: fine
    (project.root / "models/m/chat_template.jinja").symlink_to("../../.env")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "chat_template.jinja links out of the folder" in out
        and "tokenizer.json" not in out
    )
    assert "hf_sentinel" not in out


def test_a_weight_index_naming_more_files_than_any_model_is_not_followed(project, cli):
    # 10**6 shard names through links (d3/d1/.../model.safetensors) took 102 s and 826 MB per
    # folder, each resolved and remembered.
    model = local_model(project)
    (model / "d0").symlink_to(".")
    (model / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {f"t{i}": "d0/" * (i % 7) + f"s{i}.safetensors" for i in range(10_001)}}
        )
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    assert (
        "internal error" not in err
        and "names 10,001 weight files; no model has more than 10,000" in out
    )


def test_a_disk_filling_up_during_an_export_is_a_clean_error(
    project, tmp_path_factory, monkeypatch
):
    import errno

    import deployer.deploy.commit_files as commit_files
    from deployer.deploy.commit_files import CommitFiles, RefError

    from .conftest import git, git_commit

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

    from .conftest import git_commit

    # 64 MB of zeros: git stores it in 64 KB; a 1 GB file would be as cheap to commit, and as slow to write out.
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
    # A few kilobytes of git objects listed 524,288 deep files: 5 minutes and 1.6 GB to export.
    _git_plumbing(project.root, "init", "-q")
    commit = _commit_of_deployments(
        project.root, _wide_tree(project.root, fanout=8, depth=6)
    )  # 262,144 files
    started = time.monotonic()
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "hold more than 100,000 files; the deployer exports at most that many" in err
    assert time.monotonic() - started < 60


def test_a_commit_of_few_files_in_very_many_folders_is_refused(project, cli):
    # 2,000 names for one 60-deep chain: 2,000 files, 122,000 folders (each a disk block).
    _git_plumbing(project.root, "init", "-q")
    commit = _commit_of_deployments(project.root, _comb(project.root, teeth=2000, depth=60))
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "lie in more than 100,000 folders; the deployer creates at most that many" in err


def test_a_commit_whose_names_alone_take_hundreds_of_megabytes_is_refused(project, cli):
    # 262,144 files 8 levels deep under 250-character folder names: 600 MB of names in a listing
    # (within the 2,000,000-name limit), and the first listing reads the whole commit (for its links).
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
    started = time.monotonic()
    code, out, err = cli("plan", "--against", commit)
    assert (
        code == 1 and "internal error" not in err and "lists more than 256 MB of file names" in err
    ), err
    assert time.monotonic() - started < 60


def test_links_of_a_commit_cannot_make_folders_past_the_limit(project, cli):
    # A link at the end of a 98-deep chain stored once, under 10,000 names: placing the links made
    # 812,593 folders (3.8 GB) before any limit was looked at. Here 2,000 names, a 60-deep chain.
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
    started = time.monotonic()
    code, out, err = cli("plan", "--against", commit)
    assert code == 1 and "internal error" not in err
    assert "lie in more than 100,000 folders" in err and time.monotonic() - started < 30


def test_a_file_behind_many_names_is_read_once_for_the_plan(project, modal_world, cli, monkeypatch):
    # A committed 100 MB file of zeros (100 KB in git) and 1,000 links to it in the model folder:
    # plan read it 1,000 times (100 GB); a ref's export hard-links one copy to every name the same.
    import deployer.deploy.desired as desired

    from .conftest import git_commit

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


def test_a_plan_stopped_by_sigterm_removes_the_refs_export(project, tmp_path_factory):
    # A CI timeout or cancel sends SIGTERM: the export of a ref (gigabytes, perhaps) was left in TMPDIR.
    from .conftest import git, git_commit

    git(project.root, "init", "-q")
    git(project.root, "config", "user.email", "t@example.com")
    git(project.root, "config", "user.name", "t")
    model = local_model(project)
    with open(model / "model.safetensors", "wb") as handle:
        handle.truncate(400 << 20)  # written out and hashed: long enough to be caught in the act
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "a big model folder")
    temporary = tmp_path_factory.mktemp("tmpdir")
    env = {**os.environ, "TMPDIR": str(temporary), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop("MODAL_TOKEN_ID", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", "plan", "--against", "HEAD"],
        cwd=project.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while (
        not list(temporary.glob("deployer-ref-*/models/m/model.safetensors"))
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    assert process.poll() is None, "the plan ended before the export was seen"
    process.terminate()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "deployer: interrupted" in err, err
    assert list(temporary.iterdir()) == []


def test_a_model_folder_naming_one_file_many_times_is_refused(project, cli):
    # Modal uploads every name a folder holds: 1,000 links to one 100 MB file is 100 GB to upload.
    model = local_model(project)
    with open(model / "big.bin", "wb") as handle:
        handle.truncate(64 << 20)  # sparse: no room taken
    for i in range(20):
        (model / f"l{i}").symlink_to("big.bin")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate", "--format", "json")
    (error,) = json.loads(out)["diagnostics"]
    assert code == 1 and error["rule"] == "sources.repeated-content"
    assert (
        "names the same files many times over (links or hard links): apply would upload "
        "1,409,286,303 bytes for 67,109,023 bytes of content" in error["message"]
    ), error
    for i in range(10):
        (model / f"l{i}").unlink()  # 11 names: 704 MB beyond the content, under the 1 GB allowed
    assert cli("validate")[0] == 0


def test_one_folder_written_many_ways_is_walked_once(project, cli, monkeypatch):
    # `../m`, `.././m`, `../m/./.`...: each spelling walked 10,000 files again (1,000 took 4 minutes).
    import deployer.sources.folders as sources

    (project.root / "m").mkdir()
    (project.root / "m" / "adapter_config.json").write_text(
        '{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}'
    )
    adapters = "".join(f"  - {{name: a{k}, path: '../{'./' * k}m'}}\n" for k in range(30))
    adapters += "".join(f"  - {{name: b{k}, path: '../m/{'./' * k}'}}\n" for k in range(30))
    project.deployment("x", MINIMAL + "adapters:\n" + adapters)
    walks = []
    real_walk = sources._walk
    monkeypatch.setattr(
        sources,
        "_walk",
        lambda folder, yaml_folder: walks.append(folder) or real_walk(folder, yaml_folder),
    )
    rules(cli)
    assert len(walks) == 1


def test_walking_local_folders_has_a_budget_per_run(project, cli, monkeypatch):
    # 99 adapters, one per level of a 99-deep chain of folders above 4,101 files: each level walked
    # whole (400,000 entries at depth ~100). Here 20 levels above 50 files, against a budget of 500.
    import deployer.sources.folders as sources

    monkeypatch.setattr(sources, "MAX_RUN_ENTRIES", 500)
    folder = project.root / "m"
    paths = []
    for level in range(20):
        folder = folder / "d"
        paths.append("../m" + "/d" * (level + 1))
    folder.mkdir(parents=True)
    for i in range(50):
        (folder / f"f{i}").write_text("x")
    project.deployment(
        "x",
        MINIMAL
        + "adapters:\n"
        + "".join(f"  - {{name: a{i}, path: '{p}'}}\n" for i, p in enumerate(paths)),
    )
    code, out, err = cli("validate", "--format", "json")
    found = [d for d in json.loads(out)["diagnostics"] if d["rule"] == "sources.too-many-files"]
    assert (
        code == 1 and found and "this run has walked 500 files and folders" in found[0]["message"]
    )


def test_safetensors_headers_have_a_tensor_budget_per_model_and_per_run(project, cli, monkeypatch):
    # 2.6 million tiny tensors in 16 MB of header took 820 MB per model; 7 models ran out of memory.
    import deployer.sources.base_model as basemodel

    monkeypatch.setattr(basemodel, "MAX_TENSORS", 1000)
    monkeypatch.setattr(basemodel, "MAX_RUN_TENSORS", 1500)
    for i, count in enumerate((1001, 900, 900)):
        model = project.root / "models" / f"m{i}"
        model.mkdir(parents=True)
        (model / "config.json").write_text(LLAMA_CONFIG)
        _safetensors(
            model / "model.safetensors",
            {f"t{j}": {"dtype": "F16", "shape": [1]} for j in range(count)},
        )
        project.deployment(
            f"d{i}",
            LOCAL_MODEL_DEPLOYMENT.replace("models/m,", f"models/m{i},").replace(
                "served_name: m", f"served_name: m{i}"
            ),
        )
    code, out, err = cli("validate", "--format", "json")
    notes = [n["message"] for n in json.loads(out)["notes"]]
    assert "internal error" not in err
    assert any("lists 1,001 tensors; no model has more than 1,000" in n for n in notes), notes
    assert any("this run has read 1,500 tensors' headers already" in n for n in notes), notes


def test_running_out_of_memory_is_a_message_not_a_traceback(cli, monkeypatch):
    import deployer.cli.main as deployer_cli

    def exhausted(args):
        raise MemoryError

    monkeypatch.setattr(deployer_cli, "cmd_validate", exhausted)
    code, out, err = cli("validate")
    assert (
        code == 1 and err.startswith("deployer validate: out of memory") and "Traceback" not in err
    )


def test_a_file_deep_in_a_model_folder_is_in_a_refs_export_too(project, modal_world, cli):
    # Validation allows 100 levels below the model folder; the export counted 100 from the
    # repository's root, so the ref lacked the file and plan saw the folder as changed.
    from .conftest import git_commit

    model = local_model(project)
    deep = model.joinpath(*["d"] * 99)
    deep.mkdir(parents=True)
    (deep / "w.bin").write_text("weights")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    git_commit(project.root, "a deep file")
    code, out, err = cli("plan", "--against", "HEAD")
    assert code == 0 and "= unchanged x" in out, out + err


@pytest.mark.parametrize(
    "item", ["-6", "257", "1e1", "{}", "[]", '"x"', '{"k": 1}', "null", '"\\u00e9"']
)
def test_the_parse_estimate_is_never_below_what_json_makes_in_memory(item):
    # The first estimate counted `-6,` as 3 bytes: -6 is a 28-byte int outside CPython's small-int
    # cache, and 63 adapter configs of such lists reached 3.5 GB under a 256 MB budget.
    import tracemalloc

    from deployer.core.budget import parsed_size

    text = ("[" + ",".join([item] * 200_000) + "]").encode()
    tracemalloc.start()
    parsed = json.loads(text)
    made = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del parsed
    assert parsed_size(text) >= made
