"""Hostile model and adapter folders: config.json, adapter_config.json, safetensors headers and
weight indexes that are odd, malformed or far beyond any real model's. Each is a finding or a note
that the fit was not checked, never a crash, and never a wait or a print as large as the input."""

from __future__ import annotations

import json

import pytest

from ..conftest import MINIMAL
from .helpers import (
    LOCAL_MODEL_DEPLOYMENT,
    TINY_HEAD,
    local_model,
    rules,
    tiny_project,
    write_safetensors,
)


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


@pytest.mark.parametrize("shape", [[2**53] * 40, [2**53] * 200_000, [2**30, 2**30]])
def test_a_tensor_shape_beyond_any_model_leaves_fit_unchecked(project, cli, shape):
    # Shapes whose sizes overflow a float, or that have 200,000 dimensions: no real tensor's.
    model = local_model(project)
    write_safetensors(
        model / "model.safetensors",
        {"model.embed_tokens.weight": {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}},
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    assert "internal error" not in err and "has no valid shape" in out


def test_a_tensor_name_of_thousands_of_parts_is_no_models(project, cli):
    # A name is compared with the model's modules by each of its dotted endings: 35,000 here.
    model = local_model(project)
    write_safetensors(
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


def test_shard_headers_beyond_any_models_are_not_parsed(project, cli):
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


def test_a_weight_index_naming_more_files_than_any_model_is_not_followed(project, cli):
    # Shard names through a link back to the folder (d0/d0/...): each a path to resolve.
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


def test_absurd_lora_sizes_leave_the_fit_to_the_flag_check(project, cli):
    # max-loras x max-lora-rank of 1e300 each overflows the arithmetic of the fit.
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


def test_a_huge_value_quoted_from_an_adapter_config_is_cut_in_every_finding(project, cli):
    # 300 adapters share one config, and every finding about each quotes its 3 MB values.
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
