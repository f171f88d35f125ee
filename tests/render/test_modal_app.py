"""Rendered apps imported with the real `modal` package (no network): what Modal will deploy.

Most settings are read through Modal's public `Function.info()`, which works offline for a
function that has not been deployed. Two groups are not exposed there before a deploy, and are
read elsewhere, as said in each test: the web server's port and startup timeout (Modal's internal
webhook config) and the autoscaler settings (the decorator's keywords in the rendered source).
"""

from __future__ import annotations

import ast
from pathlib import Path

import modal
import pytest
from modal._utils.async_utils import synchronizer

from deployer.checks.pipeline import check_paths
from deployer.render.app import render
from deployer.render.output import write

from ..conftest import MINIMAL, REPO, import_app


def app_for(deployments: Path, name: str, out: Path):
    (deployment,) = [d for d in check_paths([deployments]).deployments if d.name == name]
    rendered = render(deployment, out)
    write(rendered)
    return import_app(rendered.path), rendered


def web_server_config(function):
    """Port and startup timeout of @modal.web_server: not in info(); Modal's webhook config."""
    config = synchronizer._translate_in(function)._webhook_config
    return config.web_server_port, config.web_server_startup_timeout


def keyword_value(node: ast.expr):
    """A decorator keyword's value: a literal, or a duration written `N * MINUTES`."""
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mult)
        and ast.unparse(node.right) == "MINUTES"
    ):
        return ast.literal_eval(node.left) * 60
    return ast.literal_eval(node)


def decorator_keywords(source: str) -> dict:
    """The keywords of @app.function(...) on `serve`, as values (image/volumes skipped)."""
    tree = ast.parse(source)
    serve = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "serve")
    call = next(
        d
        for d in serve.decorator_list
        if isinstance(d, ast.Call) and ast.unparse(d.func) == "app.function"
    )
    return {
        k.arg: keyword_value(k.value)
        for k in call.keywords
        if k.arg not in ("image", "volumes", "secrets")
    }


def test_chess_puzzle_matches_its_yaml_through_modal(tmp_path):
    module, rendered = app_for(REPO / "deployments", "chess-puzzle", tmp_path)
    assert isinstance(module.app, modal.App) and module.app.name == "chess-puzzle"
    info = module.serve.info()
    assert info.gpus == [("A10G", 1)]
    assert {path: v.name for path, v in info.volumes.items()} == {
        "/root/.cache/huggingface": "huggingface-cache",
        "/root/.cache/vllm": "vllm-cache",
    }
    assert info.secrets == []
    assert info.timeout == 300  # Modal's default; the YAML sets none
    # vLLM 0.11.2 runs up to 256 sequences on an A10G: one container batches them.
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (256, 192)
    assert info.web_info.unauthenticated is True  # auth: none
    assert web_server_config(module.serve) == (8000, 600)
    assert decorator_keywords(rendered.source) == {
        "gpu": "A10G",
        "startup_timeout": 600,
        "scaledown_window": 300,
        "max_containers": 4,
    }


def test_three_adapter_example_matches_its_yaml_through_modal(tmp_path):
    module, rendered = app_for(REPO / "deployments", "qwen3-4b-multi", tmp_path)
    info = module.serve.info()
    assert info.gpus == [("L40S", 1)]
    assert info.secrets == [
        "modal.Secret.from_name('qwen3-4b-api-key')",
        "modal.Secret.from_name('huggingface')",
    ]
    assert info.timeout == 600
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (32, None)
    assert (
        info.web_info.unauthenticated is True
    )  # the API key is checked by vLLM, not by Modal's proxy
    assert decorator_keywords(rendered.source) == {
        "gpu": "L40S",
        "startup_timeout": 600,
        "scaledown_window": 300,
        "timeout": 600,
        "max_containers": 2,
    }
    assert list(module.ADAPTERS) == ["chess-puzzle", "chess-puzzle-pinned", "sql"]


def test_proxy_auth_scaling_and_multi_gpu_reach_modal(project):
    text = MINIMAL.replace("gpu: A10G", "gpu: {type: H100, count: 4}").replace(
        "auth:\n  api_key: {secret: test-api-key}", "auth: {proxy: true}"
    )
    text += (
        "scaling:\n  min_containers: 1\n  buffer_containers: 1\n  max_containers: 3\n  "
        "max_concurrent_inputs: 64\n  target_concurrent_inputs: 48\n  startup_timeout: "
        "900\n  scaledown_window: 45\nsecrets: [huggingface]\n"
    )
    project.deployment("big", text)
    module, rendered = app_for(project.deployments, "big", project.root / "build")
    info = module.serve.info()
    assert info.gpus == [("H100", 4)]
    assert info.web_info.unauthenticated is False
    assert info.secrets == ["modal.Secret.from_name('huggingface')"]
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (64, 48)
    assert web_server_config(module.serve) == (8000, 900)
    assert (
        info.startup_timeout == 900
    )  # Modal's bound on a container's start, not only the web server's
    assert decorator_keywords(rendered.source) == {
        "gpu": "H100:4",
        "startup_timeout": 900,
        "scaledown_window": 45,
        "min_containers": 1,
        "max_containers": 3,
        "buffer_containers": 1,
    }
    assert module.VLLM_FLAGS[module.VLLM_FLAGS.index("--tensor-parallel-size") + 1] == "4"


def test_api_key_secret_is_attached_by_name_only(project):
    project.deployment("keyed", MINIMAL)
    module, rendered = app_for(project.deployments, "keyed", project.root / "build")
    assert module.serve.info().secrets == ["modal.Secret.from_name('test-api-key')"]
    assert (
        "--api-key" not in rendered.source
    )  # the app's middleware checks a digest of VLLM_API_KEY; vLLM never gets the key


def test_image_settings_and_env_reach_the_image_definition(project):
    project.deployment(
        "img",
        MINIMAL + "image:\n  base: nvidia/cuda:12.4.1-devel-ubuntu22.04\n  python: '3.11'\n  pip: "
        "[hf-transfer==0.1.9]\n  env: {HF_HUB_ENABLE_HF_TRANSFER: '1'}\n",
    )
    module, rendered = app_for(project.deployments, "img", project.root / "build")
    assert isinstance(module.vllm_image, modal.Image)
    assert (
        'modal.Image.from_registry("nvidia/cuda:12.4.1-devel-ubuntu22.04", add_python="3.11")'
        in rendered.source
    )
    assert '.uv_pip_install("vllm==0.11.2", "hf-transfer==0.1.9")' in rendered.source
    assert '.env({"HF_HUB_ENABLE_HF_TRANSFER": "1"})' in rendered.source


@pytest.mark.parametrize(
    "gpu",
    [
        "T4",
        "L4",
        "A10",
        "A10G",
        "L40S",
        "A100",
        "A100-40GB",
        "A100-80GB",
        "RTX-PRO-6000",
        "H100",
        "H100!",
        "H200",
        "B200",
        "B200+",
    ],
)
def test_every_schema_gpu_type_is_accepted_by_modal(project, gpu):
    project.deployment("g", MINIMAL.replace("gpu: A10G", f'gpu: "{gpu}:2"'))
    module, _ = app_for(project.deployments, "g", project.root / "build")
    assert module.serve.info().gpus == [(gpu.upper(), 2)]


def concurrency_of(project, text: str) -> tuple[int, int | None]:
    project.deployment("batching", text)
    module, _ = app_for(project.deployments, "batching", project.root / "build")
    info = module.serve.info().concurrency_info
    return info.max_inputs, info.target_inputs


def test_without_scaling_a_container_batches_and_modal_scales_out_at_three_quarters(project):
    max_inputs, target_inputs = concurrency_of(project, MINIMAL)
    assert max_inputs >= 16
    assert target_inputs == max_inputs * 3 // 4


def test_max_num_seqs_in_vllm_args_sets_a_containers_capacity(project):
    text = MINIMAL.replace('version: "0.11.2"', 'version: "0.11.2"\n  args:\n    max-num-seqs: 64')
    assert concurrency_of(project, text) == (64, 48)


@pytest.mark.parametrize(
    "gpu, expected",
    [
        ("L40S", (256, 192)),  # 45 GiB: vLLM's default for smaller GPUs
        ("A100-80GB", (256, 192)),  # vLLM keeps an A100 at 256 whatever its memory
        ("H100", (1000, 750)),  # vLLM runs 1024; Modal takes at most 1000 at once
    ],
)
def test_the_pinned_vllm_default_follows_the_gpu(project, gpu, expected):
    assert concurrency_of(project, MINIMAL.replace("gpu: A10G", f"gpu: {gpu}")) == expected


def test_an_explicit_max_without_a_target_is_kept_as_written(project):
    text = MINIMAL + "scaling:\n  max_concurrent_inputs: 8\n"
    assert concurrency_of(project, text) == (8, None)


def test_explicit_concurrency_wins_over_max_num_seqs(project):
    text = MINIMAL.replace(
        'version: "0.11.2"', 'version: "0.11.2"\n  args:\n    max-num-seqs: 64'
    ) + ("scaling:\n  max_concurrent_inputs: 10\n  target_concurrent_inputs: 9\n")
    assert concurrency_of(project, text) == (10, 9)


def test_containers_are_bounded_unless_the_yaml_says_null(project):
    project.deployment("bounded", MINIMAL)
    project.deployment("unbounded", MINIMAL + "scaling:\n  max_containers: null\n")
    for name, expected in (("bounded", 4), ("unbounded", None)):
        _, rendered = app_for(project.deployments, name, project.root / "build")
        assert decorator_keywords(rendered.source).get("max_containers") == expected


def test_the_image_downloads_from_the_hub_with_hf_xet_high_performance(project):
    """Image steps are built on Modal, not in info(): read from the image's `.env(...)` calls."""
    project.deployment("a", MINIMAL + "image:\n  env: {OMP_NUM_THREADS: '8'}\n")
    _, rendered = app_for(project.deployments, "a", project.root / "build")
    environment = {}
    for node in ast.walk(ast.parse(rendered.source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".env"):
            environment.update(ast.literal_eval(node.args[0]))
    assert environment == {"HF_XET_HIGH_PERFORMANCE": "1", "OMP_NUM_THREADS": "8"}
