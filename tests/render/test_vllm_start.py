"""A rendered app's start, run through Modal's real SDK (`.local()` runs a Modal function here,
and a class's `@modal.enter` methods before its method) with a stand-in vLLM on PATH
(fake_vllm.py): one that fails while starting must fail the start at once with its own words, one
that answers /health lets it return. With a GPU snapshot, every model must answer after wake-up
as it did before sleep.
"""

from __future__ import annotations

import time

import pytest

from deployer.checks.pipeline import check_paths
from deployer.render.app import render
from deployer.render.output import write

from ..conftest import import_app
from ..tiny_model import build_base_model, build_lora_adapter

pytestmark = pytest.mark.filterwarnings(
    "ignore:The .*serve function is executing locally"  # no volumes here: the weights are folders
)

DEPLOYMENT = """\
base_model: {path: ../models/tiny, served_name: tiny}
adapters:
  - {name: chess, path: ../adapters/chess}
  - {name: sql, path: ../adapters/sql}
gpu: L4
vllm:
  version: "0.11.2"
  args: {max-model-len: 512}
auth: {proxy: true}
"""
SNAPSHOT = DEPLOYMENT + "cold_start: {gpu_snapshot: true}\n"
VLLM_ERROR = "ValueError: LoRA rank 64 is greater than max_lora_rank 16."
# The bound: a start that fails must fail well within Modal's startup timeout (5 minutes).
FAILS_WITHIN = 60


def rendered_app(project, text: str):
    base = build_base_model(project.root / "models" / "tiny")
    for seed, name in enumerate(("chess", "sql"), start=1):
        build_lora_adapter(project.root / "adapters" / name, str(base), rank=8, seed=seed)
    project.deployment("tiny", text)
    checked = check_paths([project.deployments])
    assert checked.ok, checked.diagnostics
    (deployment,) = checked.deployments
    app = render(deployment, project.root / "build")
    write(app)
    return import_app(app.path)


def start(app, snapshot: bool):
    """The container's start as Modal runs it: `serve`, or the class's enter methods, then serve."""
    return app.Server().serve.local() if snapshot else app.serve.local()


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
def test_a_vllm_that_exits_while_starting_fails_the_start_at_once_with_its_words(
    project, stand_in_vllm, snapshot
):
    app = rendered_app(project, SNAPSHOT if snapshot else DEPLOYMENT)
    stand_in_vllm.serve(app)
    stand_in_vllm.behave(fails=VLLM_ERROR)
    started = time.monotonic()
    with pytest.raises(app.runtime.VllmStartFailed) as failure:
        start(app, snapshot)
    assert time.monotonic() - started < FAILS_WITHIN
    assert str(failure.value).startswith("vLLM exited with code 1 while starting")
    assert VLLM_ERROR in str(failure.value).splitlines()
    assert failure.value.returncode == 1
    assert stand_in_vllm.requests() == []  # nothing sent to a server that never came up


def test_the_start_echoes_vllms_output_as_it_comes(project, stand_in_vllm, capfd):
    app = rendered_app(project, DEPLOYMENT)
    stand_in_vllm.serve(app)
    stand_in_vllm.behave(fails=VLLM_ERROR)
    with pytest.raises(app.runtime.VllmStartFailed):
        app.serve.local()
    out = capfd.readouterr().out
    # Through the app's own output, which is what `modal app logs` shows.
    assert "Starting vLLM: python -P -m vllm.entrypoints.openai.api_server" in out
    assert "(a stand-in)" in out and VLLM_ERROR in out


@pytest.mark.parametrize("snapshot", [False, True], ids=["plain", "snapshot"])
def test_a_vllm_that_answers_health_lets_the_start_return(project, stand_in_vllm, snapshot):
    app = rendered_app(project, SNAPSHOT if snapshot else DEPLOYMENT)
    stand_in_vllm.serve(app)
    stand_in_vllm.behave(delay="3")
    assert start(app, snapshot) is None
    ((started,),) = [stand_in_vllm.starts()]
    argv = started["argv"]
    assert argv[:3] == ["-P", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--port") + 1] == str(stand_in_vllm.port)
    assert ("VLLM_SERVER_DEV_MODE" in started["env"]) == snapshot
    answers = ["POST /v1/completions"] * 3  # the base model and both adapters
    expected = [*answers, "POST /sleep?level=1", "POST /wake_up", *answers] if snapshot else []
    assert stand_in_vllm.requests() == expected


def test_a_snapshot_whose_adapters_answer_like_the_base_after_wake_up_fails_naming_them(
    project, stand_in_vllm
):
    app = rendered_app(project, SNAPSHOT)
    stand_in_vllm.serve(app)
    stand_in_vllm.behave(forgets_lora="1")
    with pytest.raises(RuntimeError) as failure:
        app.Server().serve.local()
    message = str(failure.value)
    assert "vLLM issue #53888" in message
    assert "adapter 'chess' answers like the base model after wake-up" in message
    assert "adapter 'sql' answers like the base model after wake-up" in message
    assert "'tiny'" not in message  # the base model answers as it did
