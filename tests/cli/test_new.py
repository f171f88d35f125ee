"""`deployer new`: a deployment file written from Hub adapters, against the stand-in Hub."""

from __future__ import annotations

import json

import pytest
import yaml

from deployer.vllm.scaffold import clean_length

from .hub_stand_ins import BASE, DEPLOYMENT, go_offline, lora


def comments(text: str) -> str:
    """The file's comments as one line, however they were wrapped."""
    return " ".join(line.strip().removeprefix("# ") for line in text.splitlines() if "#" in line)


@pytest.fixture
def rank_32(online):
    online.add("org/chess-lora-r32", {"adapter_config.json": lora(32)})
    return online


def test_new_from_a_rank_32_adapter_validates_and_fits_its_gpu(project, rank_32, cli):
    code, out, err = cli("new", "chess", "--adapter", "org/chess-lora-r32")
    assert code == 0, out + err
    file = project.deployments / "chess.yaml"
    assert f"wrote deployments/chess.yaml: chess-lora-r32 on {BASE}" in out
    text = file.read_text()
    assert text.startswith("# yaml-language-server: $schema=../deployer/deployment.schema.json\n")
    data = yaml.safe_load(text)
    assert data["base_model"] == {"repo": BASE}
    assert data["adapters"] == [{"name": "chess-lora-r32", "repo": "org/chess-lora-r32"}]
    assert data["auth"] == {"api_key": {"secret": "chess-api-key"}}
    assert data["vllm"]["args"]["max-model-len"] == 32768
    assert "--max-lora-rank 32 (the largest rank, chess-lora-r32's r=32)" in comments(text)
    code, out, err = cli("validate", "--format", "json")
    assert code == 0 and json.loads(out)["diagnostics"] == [], out
    code, out, _ = cli("fit", "chess", "--format", "json")
    (fit,) = json.loads(out)
    assert code == 0 and fit["fits"] and fit["lora_rank"] == 32
    assert fit["gpu"] == data["gpu"] == fit["cheapest_fitting_gpu"]["gpu"]  # the cheapest


def test_every_choice_is_commented(project, rank_32, cli):
    assert cli("new", "chess", "--adapter", "org/chess-lora-r32")[0] == 0
    lines = (project.deployments / "chess.yaml").read_text().splitlines()
    for key in ("base_model:", "adapters:", "gpu:", "    max-model-len:", "auth:"):
        above = lines[next(i for i, line in enumerate(lines) if line.startswith(key)) - 1]
        assert above.lstrip().startswith("#"), key


def test_a_given_gpu_is_kept_and_the_context_fits_it(project, rank_32, cli):
    code, out, err = cli("new", "chess", "--adapter", "org/chess-lora-r32", "--gpu", "H100")
    assert code == 0, out + err
    data = yaml.safe_load((project.deployments / "chess.yaml").read_text())
    assert data["gpu"] == "H100" and data["vllm"]["args"]["max-model-len"] == 32768
    assert cli("fit", "chess")[0] == 0


def test_an_existing_file_is_never_overwritten(project, rank_32, cli):
    file = project.deployment("chess", "# mine\n")
    code, _, err = cli("new", "chess", "--adapter", "org/chess-lora-r32")
    assert code == 1 and "deployments/chess.yaml already exists; nothing written" in err
    assert file.read_text() == "# mine\n"


def test_a_name_another_file_declares_is_refused(project, rank_32, cli):
    project.deployment("other", "name: chess\n")
    code, _, err = cli("new", "chess", "--adapter", "org/chess-lora-r32")
    assert code == 1 and "deployments/other.yaml already exists" in err
    assert not (project.deployments / "chess.yaml").exists()


def test_adapters_on_different_bases_are_refused_without_base(project, online, cli):
    other = json.loads(lora(8)) | {"base_model_name_or_path": "meta-llama/Llama-3.1-8B"}
    online.add("org/llama-lora", {"adapter_config.json": json.dumps(other)})
    code, _, err = cli("new", "mix", "--adapter", "org/chess-lora", "--adapter", "org/llama-lora")
    assert code == 1 and "trained on different base models" in err and "--base" in err
    assert "chess-lora: Qwen/Qwen3-4B-Instruct-2507" in err
    assert not (project.deployments / "mix.yaml").exists()


def test_base_is_used_where_the_adapters_name_none(project, online, cli):
    unnamed = json.loads(lora(8))
    del unnamed["base_model_name_or_path"]
    online.add("org/plain-lora", {"adapter_config.json": json.dumps(unnamed)})
    code, _, err = cli("new", "plain", "--adapter", "org/plain-lora")
    assert code == 1 and "names no base_model_name_or_path); pass --base REPO" in err
    code, out, err = cli("new", "plain", "--adapter", "org/plain-lora", "--base", BASE)
    assert code == 0, out + err
    assert yaml.safe_load((project.deployments / "plain.yaml").read_text())["base_model"] == {
        "repo": BASE
    }


def test_a_base_the_adapters_were_not_trained_on_does_not_validate(project, online, cli):
    code, _, err = cli("new", "chess", "--adapter", "org/chess-lora", "--base", "Qwen/Qwen3-4B")
    assert code == 1 and "was trained on Qwen/Qwen3-4B-Instruct-2507" in err
    assert "would not validate; nothing written" in err
    assert not (project.deployments / "chess.yaml").exists()


def test_two_revisions_of_one_repo_get_two_names(project, online, cli):
    args = ("--adapter", "org/sql-lora", "--adapter", "org/sql-lora@v1")
    assert cli("new", "sql", *args)[0] == 0
    data = yaml.safe_load((project.deployments / "sql.yaml").read_text())
    assert [a["name"] for a in data["adapters"]] == ["sql-lora", "sql-lora-v1"]
    assert data["adapters"][1]["revision"] == "v1"


def test_offline_it_says_what_it_could_not_read_and_what_it_assumed(
    project, online, cli, monkeypatch
):
    go_offline(online, monkeypatch)  # neither the adapter's rank nor the base's config is read
    code, out, err = cli("new", "chess", "--adapter", "org/chess-lora-r32", "--base", BASE)
    assert code == 0, out + err
    assert "could not read the rank of adapter 'chess-lora-r32'" in err
    assert "could not read the base model's config.json" in err
    assert "assumed GPU L40S and max-model-len 8192" in err
    text = (project.deployments / "chess.yaml").read_text()
    assert "vLLM's default --max-lora-rank 16 applies" in comments(text)
    assert "Assumed: 8,192 tokens, not checked against the model" in comments(text)
    code, out, _ = cli("validate", "--format", "json")
    assert code == 0
    assert {d["rule"] for d in json.loads(out)["diagnostics"]} == {"lora.unknown-rank"}


def test_offline_without_base_it_cannot_tell_the_base(project, online, cli, monkeypatch):
    go_offline(online, monkeypatch)
    code, _, err = cli("new", "chess", "--adapter", "org/chess-lora")
    assert code == 1 and "cannot tell the base model (chess-lora: " in err
    assert "pass --base REPO" in err and not (project.deployments / "chess.yaml").exists()


def test_where_a_lock_exists_the_new_deployment_is_locked(project, online, resolver, cli):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    code, out, err = cli("new", "chess", "--adapter", "org/chess-lora")
    assert code == 0, out + err
    assert "written  lock/sources.yaml" in out
    assert cli("validate", "--locked")[0] == 0


def test_usage_errors_exit_2(project, cli):
    assert cli("new", "chess")[0] == 2  # no --adapter
    assert cli("new", "Not A Name", "--adapter", "org/x")[0] == 2
    assert cli("new", "chess", "--adapter", "no-owner")[0] == 2
    assert cli("new", "chess", "--adapter", "org/x@")[0] == 2
    code, _, err = cli("new", "chess", "--adapter", "org/x", "--gpu", "a10x")
    assert code == 2 and "did you mean" in err


def test_contexts_are_rounded_down_to_clean_numbers():
    assert [clean_length(n) for n in (1000, 1024, 30000, 80896, 262144)] == [
        0,
        1024,
        24576,
        65536,
        262144,
    ]
