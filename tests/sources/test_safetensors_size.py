"""A safetensors file shorter or longer than its header says (a copy or download cut short) is an
error at the adapter or model holding it, on the tiny real model and adapters of tests/tiny_model.py;
Hub files only when they are in the local cache (weights are never downloaded)."""

from __future__ import annotations

from deployer.checks.pipeline import check_paths

from ..tiny_model import build_base_model, build_lora_adapter

DEPLOYMENT = (
    "base_model: {path: ../models/tiny, served_name: tiny}\ngpu: T4\nvllm: {version: '0.32.0'}\n"
    "auth: {proxy: true}\n"
)


def errors(project) -> list:
    return [d for d in check_paths([project.deployments]).diagnostics if d.is_error]


def with_adapter(project, source: str = "path: ../adapters/a") -> tuple:
    base = build_base_model(project.root / "models" / "tiny")
    adapter = build_lora_adapter(project.root / "adapters" / "a", str(base), 8, seed=1)
    project.deployment("d", DEPLOYMENT + f"adapters:\n  - {{name: a, {source}}}\n")
    return base, adapter


def cut(path, by: int) -> None:
    path.write_bytes(path.read_bytes()[:-by])


def test_intact_weights_pass(project):
    with_adapter(project)
    assert errors(project) == []


def test_a_cut_short_adapter_is_an_error_at_the_adapter(project):
    _, adapter = with_adapter(project)
    cut(adapter / "adapter_model.safetensors", 100)
    (error,) = errors(project)
    assert error.rule == "sources.unreadable" and (error.line, error.column) == (6, 5)
    assert "adapter 'a': adapter_model.safetensors is cut short" in error.message
    weights = adapter / "adapter_model.safetensors"
    data = weights.stat().st_size - 8 - int.from_bytes(weights.read_bytes()[:8], "little")
    assert (
        f"describes {data + 100:,} bytes of tensors, and the file holds {data:,}" in error.message
    )


def test_an_adapter_longer_than_its_header_says_is_an_error(project):
    _, adapter = with_adapter(project)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0" * 16)
    (error,) = errors(project)
    assert "adapter_model.safetensors is longer than its header says" in error.message


def test_an_adapter_cut_inside_its_header_is_an_error(project):
    _, adapter = with_adapter(project)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20])
    (error,) = errors(project)
    assert "is cut short: its header alone should take" in error.message


def test_a_file_that_is_no_safetensors_at_all_is_left_to_what_reads_it(project):
    _, adapter = with_adapter(project)
    (adapter / "adapter_model.safetensors").write_text("weights v1")
    assert errors(project) == []


def test_a_cut_short_base_model_is_an_error_at_the_model(project):
    base, _ = with_adapter(project)
    cut(base / "model.safetensors", 1)
    found = errors(project)
    assert [(d.rule, d.line, d.column) for d in found] == [("sources.unreadable", 1, 1)]
    assert "model.safetensors is cut short: its header describes" in found[0].message


def test_a_cut_short_adapter_in_the_hub_cache_is_an_error(project, hub_cache):
    base = build_base_model(project.root / "models" / "tiny")
    built = build_lora_adapter(project.root / "built", str(base), 8, seed=1)
    snapshot = hub_cache(
        "org/lora", {"adapter_config.json": (built / "adapter_config.json").read_text()}
    )
    weights = (built / "adapter_model.safetensors").read_bytes()
    (snapshot / "adapter_model.safetensors").write_bytes(weights[:-8])
    project.deployment("d", DEPLOYMENT + "adapters:\n  - {name: a, repo: org/lora}\n")
    found = [d for d in errors(project) if d.rule == "sources.unreadable"]
    assert len(found) == 1 and "adapter_model.safetensors is cut short" in found[0].message
    (snapshot / "adapter_model.safetensors").write_bytes(weights)
    assert [d for d in errors(project) if d.rule == "sources.unreadable"] == []
