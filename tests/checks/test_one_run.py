"""Every problem in one run: a file that fails the schema is still checked on the parts that
passed, and nothing is reported about the parts that failed."""

from __future__ import annotations

from collections import Counter

from deployer.checks.pipeline import check_paths

MANY_MISTAKES = """\
base_model:
  repo: Qwen/Qwen3-4B-Instruct-2507
adapters:
  - name: chess
    repo: pilipolio/chess-puzzle-sft-qwen3-4b
  - name: chess
    repo: pilipolio/chess-puzzle-sft-qwen3-4b
gpu: a10g
vllm:
  version: "0.11.2"
  args:
    enable-prefix-cachin: true
    gpu-memory-utilization: 1.5
image:
  env: {HF_TOKEN: abc}
scaling:
  min_containers: 3
  max_containers: 1
cold_start: {prefetch: maybe}
smoke: {max_tokens: many}
colour: blue
secrets: [hf]
auth:
  api_key: {secret: key}
"""


def errors(project, name: str, text: str) -> list[tuple[int, str]]:
    path = project.deployment(name, text)
    checked = check_paths([path])
    assert not checked.deployments  # a file with errors gives later commands nothing to use
    return [(d.line, d.rule) for d in checked.diagnostics if d.is_error]


def test_schema_errors_and_semantic_problems_are_reported_together(project):
    found = errors(project, "many", MANY_MISTAKES)
    assert sorted(found) == [
        (6, "names.duplicate-adapter"),
        (12, "flags.unknown"),
        (13, "flags.value"),
        (15, "secrets.in-env"),
        (17, "scaling.bounds"),
        (19, "schema.type"),
        (20, "schema.type"),
        (21, "schema.unknown-key"),
    ]
    assert not [key for key, count in Counter(found).items() if count > 1]


def test_a_missing_auth_does_not_hide_a_duplicate_adapter_name(project):
    text = MANY_MISTAKES.split("gpu:")[0] + 'gpu: a10g\nvllm: {version: "0.11.2"}\n'
    assert sorted(errors(project, "no-auth", text)) == [
        (1, "schema.missing-key"),
        (6, "names.duplicate-adapter"),
    ]


def test_nothing_is_reported_about_a_part_that_failed(project):
    # vllm failed (an unknown key in it): its flags are not checked, though one is misspelled.
    text = MANY_MISTAKES.replace('  version: "0.11.2"\n', '  version: "0.11.2"\n  argz: {}\n')
    found = errors(project, "vllm-failed", text)
    assert (11, "schema.unknown-key") in found
    assert not [rule for _, rule in found if rule.startswith(("flags.", "fit."))]
    assert (18, "scaling.bounds") in found  # the parts that passed are still checked


def test_a_failed_adapter_entry_skips_the_adapter_checks(project):
    text = MANY_MISTAKES.replace(
        "  - name: chess\n    repo", "  - name: chess\n    rank: 8\n    repo", 1
    )
    found = errors(project, "adapter-failed", text)
    assert (5, "schema.unknown-key") in found
    assert "names.duplicate-adapter" not in {rule for _, rule in found}
    assert (12, "flags.unknown") not in found and (13, "flags.unknown") in found


def test_an_acceptance_is_not_called_unused_when_its_check_was_skipped(project):
    text = MANY_MISTAKES.replace("auth:\n  api_key: {secret: key}\n", "auth: none\n").replace(
        '  version: "0.11.2"\n', '  version: "0.11.2"\n  argz: {}\n'
    )
    path = project.deployment("accepted", text + "accept: {auth.public: a demo}\n")
    rules = {d.rule for d in check_paths([path]).diagnostics}
    assert "schema.unknown-key" in rules and "accept.unused" not in rules
