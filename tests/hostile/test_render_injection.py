"""Values that try to become code or markup in what the deployer writes: the rendered app (names,
paths, vLLM args and env values that look like Python, templates or coding cookies; bidi controls
in its comments; the hash that tells apps apart) and the plan's summary."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.checks.pipeline import check_paths
from deployer.render.app import render
from deployer.render.literals import literal

from ..conftest import MINIMAL
from .strategies import NASTY


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
        and "scaledown_window=5 * MINUTES," in source
        and '"--tensor-parallel-size", "2",' in source
    )


# Any string the schema accepts, in every place a string reaches the rendered app, must stay data:
# the app compiles, has exactly the statements the template writes (the same AST as a deployment
# with plain strings in those places), and gives every value back through ast.literal_eval.


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


def test_plan_shows_long_values_briefly_and_tells_them_apart(project, modal_world, cli):
    from ..conftest import git_commit

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
