"""LoRA limits derived from the adapters' own configs, and the errors that save a cold start."""

from __future__ import annotations

import json

from deployer.checks.pipeline import check_paths
from deployer.vllm.argv import vllm_flags

from ..tiny_model import build_lora_adapter

BASE = """\
base_model: {repo: org/base}
gpu: L4
auth: {proxy: true}
vllm:
  version: "0.11.2"
"""


def deployment_with(project, ranks, args: str = "", rank_pattern=None):
    lines = ["adapters:"]
    for i, rank in enumerate(ranks):
        folder = build_lora_adapter(
            project.root / "adapters" / f"a{i}", "org/base", rank, seed=i, targets=["q_proj"]
        )
        if rank_pattern and i == 0:
            config = json.loads((folder / "adapter_config.json").read_text())
            config["rank_pattern"] = rank_pattern
            (folder / "adapter_config.json").write_text(json.dumps(config))
        lines.append(f"  - {{name: a{i}, path: ../adapters/a{i}}}")
    text = BASE + (f"  args: {args}\n" if args else "") + "\n".join(lines) + "\n"
    project.deployment("d", text)
    return check_paths([project.deployments])


def flag(checked, name):
    flags = vllm_flags(checked.deployments[0])
    return flags[flags.index(name) + 1] if name in flags else None


def test_max_lora_rank_is_the_smallest_allowed_value_that_fits_the_largest_adapter(project):
    assert flag(deployment_with(project, [8, 16, 32]), "--max-lora-rank") == "32"
    assert flag(deployment_with(project, [8, 20]), "--max-lora-rank") == "32"
    assert flag(deployment_with(project, [4]), "--max-lora-rank") == "8"


def test_rank_pattern_counts_toward_the_largest_rank(project):
    assert (
        flag(deployment_with(project, [8], rank_pattern={"q_proj": 64}), "--max-lora-rank") == "64"
    )


def test_max_loras_follows_the_adapter_count_up_to_a_cap(project):
    assert flag(deployment_with(project, [8]), "--max-loras") is None  # vLLM's default, 1
    assert flag(deployment_with(project, [8, 8, 8]), "--max-loras") == "3"
    assert flag(deployment_with(project, [8] * 10), "--max-loras") == "8"
    assert flag(deployment_with(project, [8] * 10, "{max-loras: 10}"), "--max-loras") == "10"


def test_explicit_rank_below_an_adapter_is_an_error_naming_it(project):
    checked = deployment_with(project, [8, 32], "{max-lora-rank: 16}")
    (error,) = checked.diagnostics
    assert (error.rule, error.path, error.line) == (
        "lora.rank-too-small",
        ("vllm", "args", "max-lora-rank"),
        6,
    )
    assert "adapter 'a1' (32)" in error.message


def test_rank_vllm_does_not_accept_suggests_the_next_allowed(project):
    checked = deployment_with(project, [8], "{max-lora-rank: 24}")
    (error,) = checked.diagnostics
    assert error.rule == "flags.value" and error.hint.startswith(
        "use 32, the smallest allowed value above it"
    )


def test_without_a_catalog_the_rank_choices_are_still_checked(project):
    deployment_with(project, [8], "{max-lora-rank: 24}")
    project.deployment(
        "d", (project.deployments / "d.yaml").read_text().replace('"0.11.2"', '"0.9.9"')
    )
    rules = {d.rule: d for d in check_paths([project.deployments]).diagnostics}
    assert set(rules) == {"flags.no-catalog", "lora.rank-choice"}
    assert rules["lora.rank-choice"].hint == "use 32, the smallest allowed value above it"


def test_max_cpu_loras_below_max_loras_is_an_error(project):
    checked = deployment_with(project, [8, 8, 8], "{max-cpu-loras: 2}")
    assert [d.rule for d in checked.diagnostics] == ["lora.cpu-loras"]
    assert "below --max-loras 3" in checked.diagnostics[0].message


def test_missing_adapter_config_is_a_warning_saying_why(project):
    (project.root / "adapters" / "bare").mkdir(parents=True)
    project.deployment("d", BASE + "adapters: [{name: bare, path: ../adapters/bare}]\n")
    (warning,) = check_paths([project.deployments]).diagnostics
    assert warning.rule == "lora.unknown-rank" and not warning.is_error
    assert "adapter_config.json is missing from ../adapters/bare" in warning.message


def test_hub_adapter_config_is_read_from_the_local_cache_at_its_revision(project, hub_cache):
    hub_cache(
        "org/chess-lora",
        {
            "adapter_config.json": json.dumps(
                {"r": 64, "lora_alpha": 64, "target_modules": ["q_proj"]}
            )
        },
    )
    project.deployment("d", BASE + "adapters: [{name: chess, repo: org/chess-lora}]\n")
    checked = check_paths([project.deployments])
    assert checked.diagnostics == ()
    assert flag(checked, "--max-lora-rank") == "64"


def test_hub_adapter_at_an_uncached_revision_is_unknown_not_guessed(project, hub_cache):
    hub_cache(
        "org/chess-lora",
        {
            "adapter_config.json": json.dumps(
                {"r": 64, "lora_alpha": 64, "target_modules": ["q_proj"]}
            )
        },
    )
    project.deployment(
        "d", BASE + "adapters: [{name: chess, repo: org/chess-lora, revision: v2}]\n"
    )
    checked = check_paths([project.deployments])
    assert [d.rule for d in checked.diagnostics] == ["lora.unknown-rank"]
    assert (
        "org/chess-lora at revision v2 is not in the local Hugging Face cache"
        in checked.diagnostics[0].message
    )
    assert flag(checked, "--max-lora-rank") is None
