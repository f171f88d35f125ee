"""Cold-start options, rendered as Modal and vLLM recommend, checked through the real `modal`
package (offline) and the vLLM argv; prefetch before deploy checked against the fake Modal.

What Modal keeps only in its deploy request (memory snapshot options, enter(snap=...) hooks) is
not in `info()` before a deploy; those are read from the rendered source's decorators, as said
in each test. Nothing here can restore a real GPU snapshot: that needs Modal's GPUs (alpha).
"""

from __future__ import annotations

import ast
from pathlib import Path

from deployer.deploy.plan import make_plan

from ..conftest import MINIMAL, git_commit
from .test_modal_app import app_for, keyword_value

PROXY = MINIMAL.replace("auth:\n  api_key: {secret: test-api-key}", "auth: {proxy: true}")
SNAPSHOT = (
    PROXY + "cold_start:\n  gpu_snapshot: true\nscaling:\n  min_containers: 1\n  "
    "buffer_containers: 2\n  max_concurrent_inputs: 16\n  startup_timeout: 1200\n  "
    "timeout: 60\n"
)


def decorators(source: str, owner: str) -> dict[str, list[str]]:
    """Each method of class `owner` → its decorators, as source text."""
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == owner)
    return {
        f.name: [ast.unparse(d) for d in f.decorator_list]
        for f in cls.body
        if isinstance(f, ast.FunctionDef)
    }


def class_keywords(source: str, owner: str) -> dict:
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == owner)
    call = next(
        d
        for d in cls.decorator_list
        if isinstance(d, ast.Call) and ast.unparse(d.func) == "app.cls"
    )
    return {
        k.arg: keyword_value(k.value)
        for k in call.keywords
        if k.arg not in ("image", "volumes", "secrets")
    }


def test_gpu_snapshot_renders_a_sleeping_server_class(project):
    project.deployment("snap", SNAPSHOT)
    module, rendered = app_for(project.deployments, "snap", project.root / "build")
    service = module.Server._get_class_service_function()
    info = service.info()
    assert info.gpus == [("A10G", 1)] and info.method_names == ["serve"]
    assert info.method_details["serve"].unauthenticated is False  # proxy auth guards /sleep too
    assert (info.concurrency_info.max_inputs, info.startup_timeout) == (
        16,
        1200,
    )  # not the 60 s request timeout
    # Snapshot options travel only in the deploy request: read from the decorator.
    keywords = class_keywords(rendered.source, "Server")
    assert keywords["enable_memory_snapshot"] is True and keywords["experimental_options"] == {
        "enable_gpu_snapshot": True
    }
    assert (keywords["min_containers"], keywords["buffer_containers"]) == (1, 2)
    hooks = decorators(rendered.source, "Server")
    assert hooks["start_and_sleep"] == ["modal.enter(snap=True)"] and hooks["wake_up"] == [
        "modal.enter(snap=False)"
    ]
    assert hooks["stop"] == ["modal.exit()"]
    assert "--enable-sleep-mode" in module.vllm_command("m", {})
    assert (
        '"VLLM_SERVER_DEV_MODE": "1"' in rendered.source
        and "/sleep?level=1" in rendered.source
        and '"/wake_up"' in rendered.source
    )
    # The warm-up (its answers recorded for after wake-up) works without a chat template.
    assert "runtime.answers(VLLM_PORT, MODEL_IDS)" in rendered.source
    assert '"/v1/completions"' in Path(module.runtime.__file__).read_text()
    assert module.MODEL_IDS == ["Qwen/Qwen3-4B-Instruct-2507"]


def test_snapshot_and_plain_deployments_share_one_image(project):
    project.deployment("snap", SNAPSHOT)
    project.deployment("plain", MINIMAL)
    _, snap = app_for(project.deployments, "snap", project.root / "build")
    _, plain = app_for(project.deployments, "plain", project.root / "build")

    def image_block(source: str) -> str:
        return source[source.index("vllm_image = (") : source.index("# ## Model and adapters")]

    assert image_block(snap.source) == image_block(
        plain.source
    )  # dev mode is set on the process, not the image


def test_default_is_a_plain_function_with_eager_mode_and_a_prefetch_function(project):
    project.deployment("plain", MINIMAL)
    module, rendered = app_for(project.deployments, "plain", project.root / "build")
    assert not hasattr(module, "Server") and "--enable-sleep-mode" not in module.VLLM_FLAGS
    prefetch = module.download_weights.info()
    assert prefetch.gpus == [] or prefetch.gpus is None  # a CPU container downloads
    assert {path: v.name for path, v in prefetch.volumes.items()} == {
        "/root/.cache/huggingface": "huggingface-cache"
    }
    assert prefetch.timeout == 3600 and prefetch.secrets == [
        "modal.Secret.from_name('test-api-key')"
    ]


def test_the_shipped_defaults_start_vllm_in_eager_mode(tmp_path):
    from ..conftest import REPO

    module, _ = app_for(REPO / "deployments", "chess-puzzle", tmp_path)
    assert "--enforce-eager" in module.VLLM_FLAGS


def test_snapshot_without_proxy_auth_is_an_error_for_its_open_dev_routes(project, cli):
    # Dev mode opens more than /sleep: /collective_rpc, /server_info and weight updates, none
    # behind vLLM's API key (the same routes VLLM_SERVER_DEV_MODE in image.env opens).
    project.deployment("snap", MINIMAL + "cold_start: {gpu_snapshot: true}\n")
    code, out, _ = cli("validate")
    assert code == 1
    assert (
        "deployments/snap.yaml:8:28: error: GPU snapshots turn on vLLM's dev-mode "
        "routes (/sleep, /wake_up, /server_info, /collective_rpc, weight updates)" in out
    )
    assert "use `auth: {proxy: true}`" in out


def test_sleep_mode_is_owned_by_cold_start(project, cli):
    project.deployment(
        "snap",
        MINIMAL.replace(
            'version: "0.11.2"', 'version: "0.11.2"\n  args: {enable-sleep-mode: true}'
        ),
    )
    code, out, _ = cli("validate")
    assert code == 1 and "cold_start.gpu_snapshot" in out


def test_apply_fills_the_cache_before_deploying_new_weights_only(project, modal_world, cli):
    fast = MINIMAL + "scaling:\n  startup_timeout: 3\n"
    project.deployment("alpha", fast)
    project.deployment("beta", fast + "cold_start: {prefetch: false}\n")
    git_commit(project.root, "two")
    assert cli("apply", "--yes")[0] == 0
    calls = [(c["op"], c["name"]) for c in modal_world.fake.state["calls"]]
    assert calls.index(("run", "alpha")) < calls.index(("deploy", "alpha"))
    assert ("run", "beta") not in calls
    assert ["run", f"{project.root}/build/alpha/app.py::download_weights"] in modal_world.argv()

    modal_world.fake.clear_calls()
    project.deployment("alpha", fast.replace("gpu: A10G", "gpu: L4"))  # no new weights
    git_commit(project.root, "alpha on L4")
    assert cli("apply", "--yes")[0] == 0
    assert [c["op"] for c in modal_world.fake.state["calls"] if c["name"] == "alpha"] == ["deploy"]


def test_a_failed_prefetch_deploys_nothing(project, modal_world, cli):
    project.deployment("alpha", MINIMAL + "scaling:\n  startup_timeout: 3\n")
    git_commit(project.root, "one")
    modal_world.fake.fail_next_run("HTTP 404: repository not found")
    code, out, _ = cli("apply", "--yes")
    assert code == 1 and "prefetch failed, so nothing was deployed (nothing was created)" in out
    assert modal_world.fake.deploys() == []


def test_prefetch_command_runs_the_download_function(project, modal_world, cli):
    project.deployment("alpha", MINIMAL)
    code, out, _ = cli("prefetch", "alpha")
    assert code == 0 and "alpha: weights cached" in out
    assert modal_world.fake.state["volume"]["huggingface-cache"] == ["Qwen/Qwen3-4B-Instruct-2507"]


def test_the_plan_says_when_weights_are_downloaded(project):
    from deployer.checks.pipeline import check_paths
    from deployer.deploy.desired import desired, project_for

    project.deployment("alpha", MINIMAL)
    project.deployment("beta", MINIMAL + "cold_start: {prefetch: false}\n")
    want = desired(
        check_paths([project.deployments]).deployments,
        project.root / "build",
        project_for(project.deployments),
    )
    plan = make_plan(want, {}, {}, project_for(project.deployments), "nowhere")
    effects = {a.name: a.effects for a in plan.actions}
    assert "downloads weights into the cache volume before deploying" in effects["alpha"]
    assert "downloads weights on first start (cold_start.prefetch is off)" in effects["beta"]


def test_the_snapshot_class_batches_by_default_too(project):
    project.deployment("snap", PROXY + "cold_start:\n  gpu_snapshot: true\n")
    module, _ = app_for(project.deployments, "snap", project.root / "build")
    info = module.Server._get_class_service_function().info()
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (256, 192)
    assert info.startup_timeout == 600
