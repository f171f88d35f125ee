"""The rendered app's `download_weights`, run for real: the real huggingface_hub downloads from
tests/fake_hub.py (a stateful fake of the Hub on loopback: the real Hub cannot be reached from our
machines) into a Hugging Face cache folder. Modal's volume commit is the only stand-in (a
recording object in place of `hf_cache_vol`): committing needs Modal's servers.

What must land in the cache is what vLLM will read at start: the one kind of weight files its load
format picks, plus configs and tokenizer, and not the other copies a repo carries.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deployer.checks.pipeline import check_paths
from deployer.render.app import render
from deployer.render.output import write

from ..conftest import import_app
from ..fake_hub import FakeHub

BASE = "org/tiny-base"
CONFIG = json.dumps(
    {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 128,
        "max_position_embeddings": 512,
        "torch_dtype": "bfloat16",
    }
)
DEPLOYMENT = """\
base_model: {repo: %s}
adapters:
  - {name: chess, repo: org/chess-lora, revision: v2}
gpu: L4
vllm:
  version: "0.32.0"
  args: {max-model-len: 256%s}
auth: {proxy: true}
"""
RUN_PREFETCH = """
import importlib.util, json, os, sys
sys.dont_write_bytecode = True  # render refuses an app folder holding __pycache__
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as `modal` does: the runtime beside the app
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

class RecordingVolume:  # stands in for modal.Volume.commit, which needs Modal's servers
    commits = 0
    def commit(self):
        RecordingVolume.commits += 1

app.hf_cache_vol = RecordingVolume()
app.download_weights.local()
print(json.dumps({"commits": RecordingVolume.commits}))
"""


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants

    with FakeHub() as fake:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        fake.add(
            "org/chess-lora",
            {
                "adapter_config.json": json.dumps(
                    {
                        "r": 8,
                        "lora_alpha": 8,
                        "target_modules": ["q_proj"],
                        "base_model_name_or_path": BASE,
                    }
                ),
                "adapter_model.safetensors": "lora",
            },
            revision="v2",
        )
        yield fake


def prefetch(project, hub, files: dict[str, str], extra_args: str = "") -> set[str]:
    """Render a deployment of a base repo holding `files`, run its download_weights, and return
    the base repo's files downloaded."""
    hub.add(BASE, {"config.json": CONFIG, "tokenizer.json": "{}", **files})
    project.deployment("tiny", DEPLOYMENT % (BASE, extra_args))
    checked = check_paths([project.deployments])
    assert [d for d in checked.diagnostics if d.is_error] == []
    rendered = render(checked.deployments[0], project.root / "build")
    write(rendered)
    hub.gets.clear()  # what validate read (configs, a tokenizer_config.json it looked for) is not the prefetch's
    out = subprocess.run(
        [sys.executable, "-c", RUN_PREFETCH, str(rendered.path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.splitlines()[-1]) == {"commits": 1}
    assert set(hub.downloaded("org/chess-lora")) == {
        "adapter_config.json",
        "adapter_model.safetensors",
    }  # at v2's commit
    return set(hub.downloaded(BASE))


REPO_WITH_COPIES = {
    "model.safetensors": "st",
    "pytorch_model.bin": "bin",
    "original/consolidated.00.pth": "pth",
    "extra.pt": "pt",
}


def test_prefetch_fetches_the_safetensors_vllm_loads_and_not_the_other_copies(project, hub):
    assert prefetch(project, hub, REPO_WITH_COPIES) == {
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    }


def test_prefetch_of_a_repo_with_only_bin_weights_fetches_them(project, hub):
    assert prefetch(project, hub, {"pytorch_model.bin": "bin"}) == {
        "config.json",
        "tokenizer.json",
        "pytorch_model.bin",
    }


def test_load_format_pt_fetches_the_pt_files(project, hub):
    assert prefetch(project, hub, REPO_WITH_COPIES, ", load-format: pt") == {
        "config.json",
        "tokenizer.json",
        "extra.pt",
    }


def test_a_load_format_with_its_own_files_fetches_the_whole_repo_but_original(project, hub):
    assert prefetch(
        project, hub, {**REPO_WITH_COPIES, "model.gguf": "gguf"}, ", load-format: gguf"
    ) == {"config.json", "tokenizer.json", "model.gguf", *REPO_WITH_COPIES} - {
        "original/consolidated.00.pth"
    }


def test_the_downloads_land_in_the_hugging_face_cache_vllm_reads(project, hub, tmp_path):
    prefetch(project, hub, {"model.safetensors": "st"})
    snapshots = (
        tmp_path
        / "hf-home"
        / "hub"
        / "models--org--tiny-base"
        / "snapshots"
        / FakeHub.commit(BASE, "main")
    )
    assert (snapshots / "model.safetensors").read_text() == "st"


COLD_START = """
import importlib.util, json, os, sys
sys.dont_write_bytecode = True  # render refuses an app folder holding __pycache__
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # as `modal` does: the runtime beside the app
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
print(json.dumps(app.weights()))
"""


def test_a_cold_start_after_prefetch_serves_from_the_cache_when_the_hub_is_down(
    project, hub, tmp_path, monkeypatch
):
    """The app downloads the base model itself before vLLM starts: with the Hub unreachable, a
    container still gets the folder prefetch filled (the Hub's own fallback to its cache)."""
    prefetch(project, hub, {"model.safetensors": "st"})
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    app_file = project.root / "build" / "tiny" / "app.py"
    out = subprocess.run(
        [sys.executable, "-c", COLD_START, str(app_file)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    model, adapters = json.loads(out.stdout.splitlines()[-1])
    snapshots = tmp_path / "hf-home" / "hub" / "models--org--tiny-base" / "snapshots"
    assert model == str(snapshots / FakeHub.commit(BASE, "main"))
    assert (Path(model) / "model.safetensors").read_text() == "st" and not (
        Path(model) / "pytorch_model.bin"
    ).exists()
    assert Path(adapters["chess"], "adapter_config.json").is_file()


def test_mistral_format_weights_are_not_fetched_unless_asked_for(project, hub):
    # Beside them vLLM would load Mistral's formats in place of the checked config.json and weights.
    mistral = {
        "model.safetensors": "st",
        "consolidated.safetensors": "mistral",
        "params.json": '{"dim": 64}',
    }
    assert prefetch(project, hub, mistral) == {
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "params.json",
    }


def test_load_format_mistral_fetches_them(project, hub):
    mistral = {
        "model.safetensors": "st",
        "consolidated.safetensors": "mistral",
        "params.json": '{"dim": 64}',
    }
    assert prefetch(project, hub, mistral, ", load-format: mistral") == {
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "consolidated.safetensors",
        "params.json",
    }


def test_mistral_weights_another_deployment_cached_are_hidden_from_vllm(project, hub_cache):
    # The cache volume is shared: a deployment with load-format: mistral fetches consolidated
    # weights into the snapshot folder that one without it then hands to vLLM, which would switch
    # to them. That one gets a folder of links to the other files instead.
    snapshot = hub_cache(
        "org/dual",
        {
            "config.json": "{}",
            "model.safetensors": "hf",
            "consolidated.safetensors": "mistral",
            "params.json": "{}",
        },
    )
    (snapshot / "sub").mkdir()
    (snapshot / "sub" / "consolidated-00001.safetensors").write_text("mistral")
    (snapshot / "sub" / "kept.json").write_text("{}")
    project.deployment(
        "hf",
        "base_model: {repo: org/dual}\ngpu: L4\nvllm: {version: '0.32.0'}\nauth: {proxy: true}\n",
    )
    project.deployment(
        "mistral",
        "base_model: {repo: org/dual}\ngpu: L4\nvllm: {version: '0.32.0', args: "
        "{load-format: mistral}}\nauth: {proxy: true}\n",
    )
    checked = check_paths([project.deployments])
    apps = {}
    for deployment in checked.deployments:
        rendered = render(deployment, project.root / "build")
        write(rendered)
        apps[deployment.name] = import_app(rendered.path)
    view = Path(apps["hf"].weights()[0])
    assert view != snapshot and sorted(
        str(p.relative_to(view)) for p in view.rglob("*") if p.is_file()
    ) == ["config.json", "model.safetensors", "params.json", "sub/kept.json"]
    assert (view / "model.safetensors").read_text() == "hf"
    assert Path(apps["mistral"].weights()[0]) == snapshot  # asked for: the folder as it is
