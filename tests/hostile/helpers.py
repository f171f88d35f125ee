"""What the hostile tests build their inputs from: a local model folder, the tiny real model, a
safetensors header, and a measure of work that does not depend on how fast the machine is."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from ..conftest import REPO
from ..tiny_model import build_base_model, build_lora_adapter

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
# A deployment of the tiny real model that tiny_project builds (its vllm: section is the test's).
TINY_HEAD = "base_model: {path: ../models/tiny, served_name: tiny}\ngpu: T4\nauth: none\n"


def local_model(project, config: str = LLAMA_CONFIG) -> Path:
    """The project's models/m folder, holding a config.json."""
    model = project.root / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text(config)
    return model


def tiny_project(project, config_edit=None, adapter_edit=None, header=None):
    """The tiny real model in models/tiny, its config edited by `config_edit`, its weights replaced
    by a bare safetensors `header`, and with `adapter_edit` an adapter in adapters/a."""
    base = build_base_model(project.root / "models" / "tiny")
    if config_edit:
        config = json.loads((base / "config.json").read_text())
        config_edit(config)
        (base / "config.json").write_text(json.dumps(config))
    if header is not None:
        raw = header.encode()
        (base / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    if adapter_edit:
        folder = build_lora_adapter(project.root / "adapters" / "a", str(base), 8, seed=1)
        config = json.loads((folder / "adapter_config.json").read_text())
        replaced = adapter_edit(config)  # edits in place, or returns the whole file's text
        (folder / "adapter_config.json").write_text(
            replaced if isinstance(replaced, str) else json.dumps(config)
        )
    return base


def rules(cli, *args):
    """The rules of every finding `validate` reports; it must report, never crash."""
    code, out, err = cli("validate", "--format", "json", *args)
    assert "internal error" not in err and "Traceback" not in err, err
    report = json.loads(out)
    return {d["rule"] for d in report["diagnostics"] + report["notes"]}


def write_safetensors(path: Path, header: dict) -> None:
    """A safetensors file of `header` alone (no tensor data)."""
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)


def lines_run(action: Callable[[], object]) -> int:
    """How many lines of the deployer's own code `action()` runs: a measure of its work that is the
    same on a fast machine and on a busy one, where a stopwatch is not."""
    package = str(REPO / "deployer")
    count = 0

    def each_line(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return each_line

    def each_call(frame, event, arg):
        return each_line if frame.f_code.co_filename.startswith(package) else None

    previous = sys.gettrace()
    sys.settrace(each_call)
    try:
        action()
    finally:
        sys.settrace(previous)
    return count
