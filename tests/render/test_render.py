"""Rendering: the golden chess-puzzle app, determinism, literals only, and the vLLM argv."""

from __future__ import annotations

import ast
import hashlib
import os
from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths
from deployer.render.app import HASH_MARKER, render
from deployer.render.literals import literal
from deployer.render.output import write

from ..conftest import FIXTURES, MINIMAL, REPO, import_app
from ..tiny_model import build_base_model, build_lora_adapter

GOLDEN = FIXTURES / "golden" / "chess-puzzle.app.py"
RUNTIME = REPO / "templates" / "deployer_runtime.py"


def rendered(project, name: str, text: str, out: str = "build"):
    project.deployment(name, text)
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    (deployment,) = [d for d in checked.deployments if d.name == name]
    app = render(deployment, Path(out))
    write(app)
    return app


def three_local_adapters(project) -> str:
    base = build_base_model(project.root / "models" / "tiny")
    for seed, name in enumerate(("alpha", "beta", "gamma")):
        build_lora_adapter(project.root / "adapters" / name, str(base), 8, seed)
    return """\
    base_model: {path: ../models/tiny, served_name: tiny}
    adapters:
      - {name: alpha, path: ../adapters/alpha}
      - {name: beta, path: ../adapters/beta}
      - {name: gamma, path: ../adapters/gamma}
    gpu: T4
    vllm: {version: "0.11.2", args: {max-model-len: 512}}
    auth: {api_key: {secret: key}}
    """


def test_chess_puzzle_render_matches_the_golden_file(monkeypatch):
    monkeypatch.chdir(REPO)
    (deployment,) = [
        d for d in check_paths([Path("deployments")]).deployments if d.name == "chess-puzzle"
    ]
    app = render(deployment, Path("build"))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(app.source, encoding="utf-8")
    assert app.source == GOLDEN.read_text(encoding="utf-8"), (
        "run UPDATE_GOLDEN=1 pytest to accept a deliberate change"
    )


def test_chess_puzzle_app_reproduces_the_reference_app():
    tree = ast.parse(GOLDEN.read_text(encoding="utf-8"))
    source = GOLDEN.read_text(encoding="utf-8")
    assert (
        'modal.Image.from_registry("nvidia/cuda:12.8.0-devel-ubuntu22.04", add_python="3.12")'
        in source
    )
    assert ".entrypoint([])" in source
    # What the YAML asks for, and everything it needs, as the lock pins it (with hashes).
    assert '.uv_pip_install(requirements=[str(HERE / "requirements.txt")])' in source
    (locked,) = (REPO / "lock" / "images").glob("*.txt")
    pins = locked.read_text(encoding="utf-8")
    assert "\nvllm==0.11.2 \\\n" in pins and "\nhuggingface-hub==0.36.0 \\\n" in pins
    assert 'modal.Volume.from_name("huggingface-cache", create_if_missing=True)' in source
    assert 'modal.Volume.from_name("vllm-cache", create_if_missing=True)' in source
    assert "@modal.web_server(port=VLLM_PORT, startup_timeout=10 * MINUTES)" in source
    assert "import deployer_runtime as runtime" in source  # which downloads:
    assert "snapshot_download(" in RUNTIME.read_text(encoding="utf-8")
    constants = {
        n.targets[0].id: n.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
    }
    assert ast.literal_eval(constants["MINUTES"]) == 60
    assert ast.literal_eval(constants["ADAPTERS"]) == {
        "chess-puzzle": {"repo": "pilipolio/chess-puzzle-sft-qwen3-4b", "revision": None}
    }
    assert ast.literal_eval(constants["BASE_MODEL"]) == "Qwen/Qwen3-4B-Instruct-2507"
    assert ast.literal_eval(constants["VLLM_SERVER"]) == [
        "python",
        "-P",
        "-m",
        "vllm.entrypoints.openai.api_server",
    ]
    assert ast.literal_eval(constants["VLLM_FLAGS"]) == [
        "--served-model-name",
        "Qwen/Qwen3-4B-Instruct-2507",
        "--enable-lora",
        "--enforce-eager",
        "--max-model-len",
        "65536",
    ]


def test_the_chess_puzzle_app_reads_in_at_most_120_lines():
    # The story (image, model and adapters, volumes, the server) fits a screenful or two; the
    # machinery lives in the runtime module beside it.
    assert len(GOLDEN.read_text(encoding="utf-8").splitlines()) <= 120


def test_the_runtime_files_are_written_beside_every_app_unchanged(project):
    app = rendered(project, "a", MINIMAL)
    folder = app.path.parent
    assert (folder / "deployer_runtime.py").read_bytes() == RUNTIME.read_bytes()
    assert (folder / "deployer_auth_guard.py").read_bytes() == (
        REPO / "templates" / "vllm_auth_guard.py"
    ).read_bytes()


def test_a_stale_runtime_file_makes_the_app_out_of_date_and_is_rewritten(project, cli):
    rendered(project, "a", MINIMAL)
    runtime = project.root / "build" / "a" / "deployer_runtime.py"
    runtime.write_text("def weights(*args, **kwargs):\n    return 'elsewhere', {}\n")
    code, out, _ = cli("render", "--check")
    assert code == 1 and "out of date" in out
    assert cli("render")[0] == 0 and runtime.read_bytes() == RUNTIME.read_bytes()


def test_the_app_imports_the_runtime_beside_it(project):
    app = import_app(rendered(project, "a", MINIMAL).path)
    assert Path(app.runtime.__file__) == project.root / "build" / "a" / "deployer_runtime.py"


def test_the_code_hash_covers_the_runtime_files_but_not_their_comments(project):
    import dataclasses

    app = rendered(project, "a", MINIMAL)
    (name, text), *others = app.runtime_files

    def with_runtime(new_text: str):
        return dataclasses.replace(app, runtime_files=((name, new_text), *others)).code_hash

    assert with_runtime(text.replace("# ## Weights", "# ## Downloads")) == app.code_hash
    assert with_runtime(text.replace("time.sleep(1)", "time.sleep(3)")) != app.code_hash


def test_render_is_deterministic_and_ignores_comments_and_key_order(project):
    first = rendered(project, "a", MINIMAL)
    again = rendered(project, "a", MINIMAL)
    reordered = (
        "auth:\n  api_key: {secret: test-api-key}  # a comment\nvllm:\n  version: "
        "'0.11.2'\ngpu: A10G\n\nbase_model:\n  repo: Qwen/Qwen3-4B-Instruct-2507\n"
    )
    shuffled = rendered(project, "a", reordered)
    assert first.source == again.source == shuffled.source
    changed = rendered(project, "a", MINIMAL.replace("A10G", "L4"))
    assert changed.content_hash != first.content_hash


def test_header_names_the_sources_and_a_hash_of_the_body(project):
    project.write("deployments/_defaults.yaml", "scaling: {scaledown_window: 120}\n")
    app = rendered(project, "a", MINIMAL)
    assert (
        "# Rendered by deployer from deployments/a.yaml with defaults from "
        "deployments/_defaults.yaml." in app.source
    )
    assert f"{HASH_MARKER}{app.content_hash}\n" in app.source
    body = app.source.replace(app.content_hash, "PENDING", 1)
    assert hashlib.sha256(body.encode()).hexdigest() == app.content_hash


def test_rendered_app_compiles_and_every_constant_is_a_literal(project):
    app = rendered(project, "a", MINIMAL)
    tree = ast.parse(app.source)
    compile(app.source, str(app.path), "exec")
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and node.targets[0].id.isupper()
            and node.targets[0].id != "HERE"
        ):
            ast.literal_eval(node.value)


def test_render_writes_build_name_app_py_atomically_and_reports_unchanged(project):
    app = rendered(project, "a", MINIMAL)
    assert app.path == project.root / "build" / "a" / "app.py"
    assert write(app) is False  # same content: untouched
    assert sorted(p.name for p in app.path.parent.iterdir()) == [
        "app.py",
        "deployer_auth_guard.py",
        "deployer_lora_resolver.py",
        "deployer_runtime.py",
    ]  # no temporary files left


def test_zero_adapters_means_no_lora_flags(project, hub_cache):
    # A Hub base model is downloaded by the app itself (vLLM gets no Hub token): vLLM gets its folder.
    snapshot = hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": "{}"})
    app = import_app(rendered(project, "a", MINIMAL).path)
    model, folders = app.weights()
    assert (model, folders) == (str(snapshot), {})
    command = app.vllm_command(model, folders)
    assert command == [
        "python", "-P", "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(snapshot),
        "--served-model-name", "Qwen/Qwen3-4B-Instruct-2507",
        "--middleware", "deployer_auth_guard.RequireApiKey",  # auth.api_key: the key on every route
        "--host", "0.0.0.0", "--port", "8000",
    ]  # fmt: skip


def test_one_hub_adapter_is_a_single_lora_module(project):
    app = import_app(
        rendered(
            project,
            "a",
            MINIMAL + "adapters: [{name: chess, repo: org/chess-lora, revision: abc123}]\n",
        ).path
    )
    assert app.ADAPTERS == {"chess": {"repo": "org/chess-lora", "revision": "abc123"}}
    command = app.vllm_command("Qwen/Qwen3-4B-Instruct-2507", {"chess": "/cache/chess"})
    assert command[command.index("--enable-lora") - 2 :][:3] == [
        "--served-model-name",
        "Qwen/Qwen3-4B-Instruct-2507",
        "--enable-lora",
    ]
    assert command[-2:] == ["--lora-modules", "chess=/cache/chess"]


def test_three_local_adapters_go_after_one_lora_modules_flag(project):
    app = import_app(rendered(project, "three", three_local_adapters(project)).path)
    model, folders = app.weights()
    assert model == "/root/sources/models/base"
    assert folders == {
        name: f"/root/sources/adapters/{name}" for name in ("alpha", "beta", "gamma")
    }
    command = app.vllm_command(model, folders)
    assert command.count("--lora-modules") == 1
    assert command[command.index("--lora-modules") :] == [
        "--lora-modules",
        *(f"{n}=/root/sources/adapters/{n}" for n in ("alpha", "beta", "gamma")),
    ]
    assert command[command.index("--max-model-len") + 1] == "512"


def test_local_weights_resolve_to_this_machines_folders(project):
    app = import_app(rendered(project, "three", three_local_adapters(project)).path)
    model, folders = app.weights(local=True)
    assert model == str(project.root / "models" / "tiny")
    assert folders["beta"] == str(project.root / "adapters" / "beta")


def test_local_folders_are_found_relative_to_the_app_wherever_it_is_rendered(project):
    text = three_local_adapters(project)
    app = import_app(rendered(project, "three", text, out="elsewhere/deep/out").path)
    assert app.weights(local=True)[1]["gamma"] == str(project.root / "adapters" / "gamma")


def test_gpu_count_above_one_sets_tensor_parallelism(project):
    app = import_app(rendered(project, "a", MINIMAL.replace("gpu: A10G", "gpu: H100:2")).path)
    flags = app.VLLM_FLAGS
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"


def test_vllm_args_render_by_kind(project):
    args = (
        "{enforce-eager: false, max-model-len: 4096, gpu-memory-utilization: 0.85, "
        "allowed-origins: [a, b], compilation-config: {level: 0}}"
    )
    app = import_app(
        rendered(
            project, "a", MINIMAL.replace('version: "0.11.2"', f'version: "0.11.2"\n  args: {args}')
        ).path
    )
    assert app.VLLM_FLAGS[2:] == [  # sorted by flag name: YAML key order changes nothing
        "--allowed-origins", '["a","b"]',  # parsed as JSON by vLLM 0.11.2
        "--compilation-config", '{"level":0}',
        "--no-enforce-eager",
        "--gpu-memory-utilization", "0.85",
        "--max-model-len", "4096",
        "--middleware", "deployer_auth_guard.RequireApiKey",  # last, so it is the outermost middleware
    ]  # fmt: skip


def test_yaml_key_order_does_not_change_the_rendered_app(project):
    one = rendered(
        project,
        "a",
        MINIMAL.replace(
            'version: "0.11.2"',
            'version: "0.11.2"\n  args: {max-model-len: 4096, enforce-eager: true}',
        ),
    )
    other = rendered(
        project,
        "a",
        MINIMAL.replace(
            'version: "0.11.2"',
            'version: "0.11.2"\n  args: {enforce-eager: true, max-model-len: 4096}',
        ),
    )
    assert one.source == other.source


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'it\'s "quoted"',
        "'''",
        '"""',
        "back\\slash",
        "new\nline",
        "{{ jinja }}",
        "{% if %}",
        "# hash",
        "ünïcødé ✓",
        1.5,
        -3,
        True,
        None,
        [1, "a"],
        {"k": ["v"]},
    ],
)
def test_literal_reads_back_equal(value):
    assert ast.literal_eval(literal(value)) == value
    assert ast.literal_eval(literal([value] * 30, indent=4)) == [value] * 30


@pytest.mark.parametrize(("python", "safe"), [("3.12", True), ("3.11", True), ("3.10", False)])
def test_committed_folders_in_the_servers_working_folder_are_not_importable(tmp_path, python, safe):
    # vLLM imports classes named by flags (scheduler-cls, worker-cls, ...); it runs in /root,
    # where local folders land under sources/. `python -m` puts its working folder on the import
    # path unless -P (3.11+) says not to: shown with the real interpreter and a module that also
    # imports what it is told to (pickle, given a pickle naming a class).
    import subprocess
    import sys

    from deployer.vllm.argv import vllm_server

    (tmp_path / "sources" / "adapters" / "a").mkdir(parents=True)
    (tmp_path / "sources" / "adapters" / "a" / "evil.py").write_text(
        "open('ran', 'w').close()\nX = 1\n"
    )
    (tmp_path / "names-a-class.pickle").write_bytes(b"csources.adapters.a.evil\nX\n.")
    server = vllm_server(python)
    assert ("-P" in server) == safe
    prefix = [sys.executable, *server[1 : server.index("-m")]]
    subprocess.run(
        [*prefix, "-m", "pickle", "names-a-class.pickle"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert (tmp_path / "ran").exists() != safe
