"""`adapter_loading`: static by default; dynamic turns on LoRA with room for adapters staged later,
closes vLLM's adapter routes, and asks that every adapter name can be a folder of its own."""

from __future__ import annotations

from deployer.checks.pipeline import check_paths
from deployer.vllm.argv import MAX_LORAS_CAP, vllm_flags

from ..tiny_model import build_lora_adapter

BASE = """\
base_model: {repo: org/base}
gpu: L4
auth: {proxy: true}
vllm:
  version: "0.11.2"
"""


def checked(project, text: str):
    project.deployment("d", text)
    return check_paths([project.deployments])


def with_adapters(project, count: int, extra: str = "") -> str:
    lines = ["adapters:"]
    for i in range(count):
        build_lora_adapter(project.root / "adapters" / f"a{i}", "org/base", 8, seed=i)
        lines.append(f"  - {{name: a{i}, path: ../adapters/a{i}}}")
    return BASE + extra + "\n".join(lines) + "\n"


def test_adapter_loading_is_static_unless_the_yaml_says_dynamic(project):
    (static,) = checked(project, BASE).deployments
    assert static.adapter_loading == "static" and not static.loads_adapters_dynamically
    (dynamic,) = checked(project, BASE + "adapter_loading: dynamic\n").deployments
    assert dynamic.adapter_loading == "dynamic" and dynamic.loads_adapters_dynamically


def test_another_word_is_a_schema_error_naming_the_two(project):
    result = checked(project, BASE + "adapter_loading: sometimes\n")
    (problem,) = [d for d in result.diagnostics if d.rule == "schema.enum"]
    assert (problem.line, problem.path) == (6, ("adapter_loading",))
    assert "static, dynamic" in problem.hint


def test_a_dynamic_deployment_without_adapters_still_serves_lora(project):
    (deployment,) = checked(project, BASE + "adapter_loading: dynamic\n").deployments
    flags = vllm_flags(deployment)
    assert "--enable-lora" in flags
    assert flags[flags.index("--max-loras") + 1] == str(MAX_LORAS_CAP)
    assert flags[-2:] == ["--middleware", "deployer_auth_guard.CloseAdapterRoutes"]
    (static,) = checked(project, BASE).deployments
    assert "--enable-lora" not in vllm_flags(static) and "--middleware" not in vllm_flags(static)


def test_max_loras_does_not_follow_the_adapter_count_when_dynamic(project):
    """A hot-added adapter must not change vLLM's flags (which would need a restart)."""

    def max_loras(text: str) -> str | None:
        flags = vllm_flags(checked(project, text).deployments[0])
        return flags[flags.index("--max-loras") + 1] if "--max-loras" in flags else None

    assert max_loras(with_adapters(project, 2)) == "2"
    assert max_loras(with_adapters(project, 2, "adapter_loading: dynamic\n")) == "8"
    assert max_loras(with_adapters(project, 3, "adapter_loading: dynamic\n")) == "8"
    explicit = with_adapters(project, 2, "adapter_loading: dynamic\n").replace(
        'version: "0.11.2"\n', 'version: "0.11.2"\n  args: {max-loras: 3}\n'
    )
    assert max_loras(explicit) == "3"  # as written


def test_a_dynamic_deployments_adapter_cannot_be_named_like_a_file_of_its_folder(project):
    build_lora_adapter(project.root / "adapters" / "a", "org/base", 8, seed=1)
    text = BASE + (
        "adapter_loading: dynamic\nadapters:\n"
        "  - {name: ok, path: ../adapters/a}\n"
        "  - {name: deployer-adapters.json, path: ../adapters/a}\n"
    )
    result = checked(project, text)
    problems = [d for d in result.diagnostics if d.rule == "names.staged-adapter"]
    assert [(d.line, d.path) for d in problems] == [(9, ("adapters", 1, "name"))]
    assert "is reserved for a file the adapter folder holds" in problems[0].message
    static = checked(project, text.replace("adapter_loading: dynamic\n", ""))
    assert not [d for d in static.diagnostics if d.rule == "names.staged-adapter"]
