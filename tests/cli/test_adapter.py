"""`deployer adapter add` and `deployer adapter remove`: the file edited in place, checked first."""

from __future__ import annotations

import json

import pytest

from .hub_stand_ins import DEPLOYMENT, go_offline, lora

COMMENTED = """\
# yaml-language-server: $schema=../deployer/deployment.schema.json
#
# Chess adapters on Qwen3-4B, written by hand.

base_model:
  repo: Qwen/Qwen3-4B-Instruct-2507   # the base they were trained on

adapters:
  # the one in production
  - name: chess
    repo: org/chess-lora      # retrained weekly

gpu: A10G   # 24 GB is enough at 32K

vllm:
  version: "0.11.2"
  args:
    max-model-len: 32768  # fits beside the weights

auth:
  api_key: {secret: chess-api-key}   # clients pass it as api_key
"""


@pytest.fixture
def chess(project):
    return project.deployment("chess", COMMENTED)


def test_add_keeps_every_comment_and_the_result_validates(chess, cli):
    code, out, err = cli("adapter", "add", "chess", "chess-v2", "--repo", "org/chess-lora@v2")
    assert code == 0, out + err
    assert "added adapter 'chess-v2' (org/chess-lora@v2) to deployments/chess.yaml" in out
    assert chess.read_text() == COMMENTED.replace(
        "# retrained weekly\n",
        "# retrained weekly\n  - name: chess-v2\n    repo: org/chess-lora\n    revision: v2\n",
    )
    assert cli("validate")[0] == 0


def test_adding_a_taken_name_exits_1_and_leaves_the_file_byte_identical(chess, cli):
    before = chess.read_bytes()
    code, _, err = cli("adapter", "add", "chess", "chess", "--repo", "org/other-lora")
    assert code == 1 and "'chess' is already declared" in err and "nothing written" in err
    assert chess.read_bytes() == before


def test_add_then_remove_gives_back_the_original_byte_for_byte(chess, cli):
    before = chess.read_bytes()
    assert cli("adapter", "add", "chess", "sql", "--repo", "org/sql-lora")[0] == 0
    code, out, _ = cli("adapter", "remove", "chess", "sql")
    assert code == 0 and "removed adapter 'sql' from deployments/chess.yaml" in out
    assert chess.read_bytes() == before


def test_crlf_files_stay_crlf_and_come_back_byte_for_byte(project, cli):
    file = project.deployments / "chess.yaml"
    file.write_bytes(COMMENTED.replace("\n", "\r\n").encode())
    before = file.read_bytes()
    assert cli("adapter", "add", "chess", "sql", "--repo", "org/sql-lora")[0] == 0
    assert b"  - name: sql\r\n    repo: org/sql-lora\r\n" in file.read_bytes()
    assert cli("adapter", "remove", "chess", "sql")[0] == 0
    assert file.read_bytes() == before


def test_a_local_folder_is_written_relative_to_the_deployment_file(chess, project, cli):
    folder = project.root / "adapters" / "chess-v3"
    folder.mkdir(parents=True)
    config = {"r": 8, "lora_alpha": 8, "target_modules": ["q_proj"], "peft_type": "LORA"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    code, out, err = cli("adapter", "add", "chess", "chess-v3", "--path", "adapters/chess-v3")
    assert code == 0, out + err
    assert "  - name: chess-v3\n    path: ../adapters/chess-v3\n" in chess.read_text()


def test_a_missing_folder_exits_1_and_writes_nothing(chess, cli):
    before = chess.read_bytes()
    code, _, err = cli("adapter", "add", "chess", "mine", "--path", "adapters/nowhere")
    assert code == 1 and "no such folder" in err and chess.read_bytes() == before


def test_a_missing_deployment_exits_1(project, cli):
    code, _, err = cli("adapter", "add", "nope", "x", "--repo", "org/x")
    assert code == 1 and "no deployment named 'nope'" in err
    assert cli("adapter", "remove", "nope", "x")[0] == 1


def test_a_result_that_would_not_validate_exits_1_and_writes_nothing(chess, cli):
    before = chess.read_bytes()
    code, out, err = cli("adapter", "add", "chess", "not a name!", "--repo", "org/x")
    assert code == 1 and "would not validate" in err
    assert "deployments/chess.yaml (edited):12:" in err and "[adapters[1].name]" in err
    assert chess.read_bytes() == before


def test_removing_an_undeclared_adapter_exits_1(chess, cli):
    before = chess.read_bytes()
    code, _, err = cli("adapter", "remove", "chess", "sql")
    assert code == 1 and "no adapter named 'sql'" in err and chess.read_bytes() == before


def test_usage_errors_exit_2(chess, cli):
    assert cli("adapter", "add", "chess", "x")[0] == 2  # neither --repo nor --path
    assert cli("adapter", "add", "chess", "x", "--repo", "org/x", "--path", "a")[0] == 2
    assert cli("adapter", "add", "chess", "x", "--repo", "org/x@")[0] == 2


def test_adapters_from_defaults_are_not_silently_replaced(project, cli):
    project.write("deployments/_defaults.yaml", "adapters:\n  - {name: base, repo: org/base}\n")
    file = project.deployment("plain")
    before = file.read_bytes()
    code, _, err = cli("adapter", "add", "plain", "x", "--repo", "org/x")
    assert code == 1 and "_defaults.yaml declares the adapters" in err
    assert file.read_bytes() == before


def test_where_a_lock_exists_add_pins_the_new_adapter_and_remove_unpins_it(
    project, online, resolver, cli
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    sources = project.root / "lock" / "sources.yaml"
    locked = sources.read_bytes()
    online.add("org/new-lora", {"adapter_config.json": lora(8)})
    code, out, err = cli("adapter", "add", "d", "new", "--repo", "org/new-lora")
    assert code == 0, out + err
    assert "written  lock/sources.yaml" in out
    assert f"commit: {online.head('org/new-lora')}" in sources.read_text()
    assert cli("adapter", "remove", "d", "new")[0] == 0
    assert sources.read_bytes() == locked
    assert len(resolver.calls) == 1  # the image's packages were kept, not resolved again


def test_where_the_hub_is_out_of_reach_the_lock_records_the_adapter_unresolved(
    project, online, resolver, cli, monkeypatch
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    go_offline(online, monkeypatch)
    code, out, err = cli("adapter", "add", "d", "new", "--repo", "org/new-lora")
    assert code == 0, out + err
    assert "could not resolve d: adapter 'new' (org/new-lora@main)" in err
    assert "recorded in the lock as unresolved" in err
    text = (project.root / "lock" / "sources.yaml").read_text()
    assert text.count("commit: unresolved") == 1
