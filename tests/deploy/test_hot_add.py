"""Adapters added to a running dynamic deployment with no restart (`adapter_loading: dynamic`),
against the fake Modal (tests/fake_modal.py): plan says "hot-add, no restart", apply stages the
adapters into the app's adapters volume and deploys no new version, the endpoint then answers
them, and anything that is not a pure addition is a normal update.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request

import pytest

from deployer.deploy.hot_add import (
    STATE_FILE,
    HotAddState,
    parse_state,
    staged_folder,
    state_text,
)
from deployer.deploy.platform.modal_cli import ModalCli

from ..conftest import ADAPTER_CONFIG, FAST, REPO, git_commit
from ..fake_modal import MANIFEST

DYNAMIC = FAST + "adapter_loading: dynamic\n"
VOLUME = "alpha-adapters"


def adapter(project, name: str, rank: int = 8, weights: str = "v1") -> None:
    config = {**json.loads(ADAPTER_CONFIG), "r": rank}
    project.write(f"adapters/{name}/adapter_config.json", json.dumps(config))
    project.write(f"adapters/{name}/adapter_model.safetensors", f"weights {weights}")


def alpha(project, *names: str) -> str:
    listed = "".join(f"  - name: {n}\n    path: ../adapters/{n}\n" for n in names)
    project.deployment("alpha", DYNAMIC + ("adapters:\n" + listed if names else ""))
    return git_commit(project.root, f"alpha with {', '.join(names) or 'no adapters'}")


@pytest.fixture
def deployed(project, modal_world, cli):
    """alpha, dynamic, deployed with adapter sql; then adapter other added to its YAML."""
    adapter(project, "sql")
    alpha(project, "sql")
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    adapter(project, "other")
    alpha(project, "sql", "other")
    return modal_world


def manifest(world) -> dict:
    return json.loads(world.fake.volume_files(VOLUME)[MANIFEST])["adapters"]


def chat(world, model: str) -> int:
    request = urllib.request.Request(
        f"{world.server.url}/alpha/v1/chat/completions",
        json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        {"Authorization": "Bearer test-key", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_full_deploy_of_a_dynamic_deployment_stages_its_adapters(deployed):
    assert sorted(manifest(deployed)) == ["sql"]
    state = parse_state(deployed.fake.volume_files(VOLUME)[STATE_FILE])
    assert not state.is_hot_add  # the version serves its own adapters


def test_plan_shows_a_new_adapter_as_a_hot_add_with_no_restart(
    deployed, cli, tmp_path, monkeypatch
):
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2, out
    (line,) = [x for x in out.splitlines() if " alpha " in x]
    assert line.startswith("^ hot-add   alpha  (v1 ") and line.endswith(": hot-add, no restart)")
    assert "      adapter other added: path:../adapters/other (contents " in out
    assert "means: stages other into volume alpha-adapters" in out and "no new app version" in out
    assert "Plan: 1 to hot-add; 0 unchanged" in out

    code, out, _ = cli("plan", "--format", "json")
    (action,) = json.loads(out)["actions"]
    assert action["action"] == "hot-add"
    assert action["hot_add"] == {"adapters": ["other"], "restart": False}
    assert [c["what"] for c in action["changes"]] == ["adapter other"]

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    cli("plan", "--format", "github")
    assert "| ^ | `alpha` | **hot-add** (no restart) |" in summary.read_text()


def test_apply_stages_the_adapter_and_deploys_no_new_version(deployed, cli):
    deploys = deployed.fake.deploys()
    assert chat(deployed, "other") == 404
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    assert "hot-added" in out and "other staged with no restart" in out
    assert deployed.fake.deploys() == deploys  # no `modal deploy`
    assert [v.number for v in deployed.fake.history("alpha")] == [1]
    assert sorted(manifest(deployed)) == ["other", "sql"]
    state = parse_state(deployed.fake.volume_files(VOLUME)[STATE_FILE])
    assert state.is_hot_add and [n for n, _ in state.adapters] == ["sql", "other"]
    assert state.deployed_hash in deployed.fake.history("alpha")[0].tag
    assert chat(deployed, "other") == 200 and chat(deployed, "sql") == 200

    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 0 and "Plan: no changes; 1 unchanged" in out
    assert "serves the adapters of a hot-add on top of its version (sql, other)" in out


def test_a_retrained_adapter_is_hot_added_over_its_earlier_copy(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0
    adapter(project, "other", weights="v2")
    git_commit(project.root, "other retrained")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "^ hot-add   alpha" in out
    (change,) = [line for line in out.splitlines() if "adapter other" in line]
    assert change.startswith("      adapter other: path:../adapters/other (contents ")
    assert code == 2 and cli("apply", "--yes")[0] == 0
    assert [v.number for v in deployed.fake.history("alpha")] == [1]
    assert cli("plan", "--detailed-exitcode")[0] == 0


def test_removing_an_adapter_or_changing_a_setting_is_a_normal_update(deployed, project, cli):
    alpha(project)  # sql removed, nothing added
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out, out
    assert "note: not a hot-add: adapter sql removed; removing takes a full deploy" in out, out

    alpha(project, "sql", "other")
    yaml = project.deployments / "alpha.yaml"
    yaml.write_text(yaml.read_text().replace('"0.11.2"', '"0.11.2"\n  args: {max-model-len: 8192}'))
    git_commit(project.root, "a longer context")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out
    assert "not a hot-add: settings besides the adapters change" in out
    assert "vllm flag --max-model-len added: 8192" in out and "adapter other added" in out


def test_an_adapter_above_the_deployed_max_lora_rank_is_a_normal_update(deployed, project, cli):
    adapter(project, "other", rank=64)
    git_commit(project.root, "other at rank 64")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out
    assert "not a hot-add: the adapters change vLLM's flags (--max-lora-rank 8 → 64)" in out


def test_a_hot_add_whose_smoke_check_fails_is_taken_out_again(deployed, cli, monkeypatch):
    import deployer.deploy.hot_add

    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_SMOKE_SECONDS", 0.3)
    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_RETRY_SECONDS", 0.1)
    before = deployed.fake.volume_files(VOLUME)
    deployed.fake.next_stage_writes_base("alpha", "Qwen/Qwen3-4B-Instruct-2507")  # not --model

    code, out, _ = cli("apply", "--yes")
    assert code == 1
    (row,) = [line for line in out.splitlines() if line.startswith("alpha ")]
    assert "ROLLED BACK" in row and "smoke check failed: chat other" in row
    assert "other taken out of the adapters volume again (v1 serves as before)" in out
    assert deployed.fake.volume_files(VOLUME) == before  # the state file too
    assert [v.number for v in deployed.fake.history("alpha")] == [1]
    assert chat(deployed, "other") == 404
    code, out, _ = cli("plan", "--detailed-exitcode")  # still to do
    assert code == 2 and "^ hot-add   alpha" in out


def test_rollback_of_a_hot_add_takes_its_adapters_out_with_no_new_version(deployed, cli):
    assert cli("apply", "--yes")[0] == 0
    code, out, err = cli("rollback", "alpha")
    assert code == 0, out + err
    assert (
        "hot-add undone with no restart; v1 serves its own adapters again (sql; were sql, other)"
        in out
    )
    assert sorted(manifest(deployed)) == ["sql"]
    assert [v.number for v in deployed.fake.history("alpha")] == [1]
    assert not any(c["op"] == "rollback" for c in deployed.fake.state["calls"])
    assert chat(deployed, "other") == 404 and chat(deployed, "sql") == 200
    code, out, _ = cli("plan", "--detailed-exitcode")  # the YAML still has it
    assert code == 2 and "^ hot-add   alpha" in out


def test_a_later_full_deploy_renders_the_adapter_into_the_app(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0
    hot_state = deployed.fake.volume_files(VOLUME)[STATE_FILE]
    project.deployment(
        "alpha",
        project.deployments.joinpath("alpha.yaml").read_text().replace("gpu: A10G", "gpu: L40S"),
    )
    git_commit(project.root, "alpha on L40S")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out and "gpu: A10G → L40S" in out

    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    current = deployed.fake.current("alpha")
    assert current["number"] == 2 and current["models"][1:] == ["sql", "other"]
    assert '"other": {"folder": ' in current["source"]  # ADAPTERS holds it: loaded at start

    # A state file of a hot-add onto v1 is ignored once v2 serves.
    deployed.fake.write_volume_file(VOLUME, STATE_FILE, hot_state)
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 0 and "Plan: no changes; 1 unchanged" in out and "hot-add" not in out


def test_a_full_deploy_that_removes_an_adapter_takes_it_out_of_the_volume(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0
    alpha(project, "other")  # sql removed
    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    assert sorted(manifest(deployed)) == ["other"]
    assert cli("plan", "--detailed-exitcode")[0] == 0


def test_reverting_the_yaml_after_a_hot_add_is_a_full_deploy_that_takes_it_out(
    deployed, project, cli
):
    assert cli("apply", "--yes")[0] == 0
    alpha(project, "sql")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha" in out and "adapter other removed" in out
    assert cli("apply", "--yes")[0] == 0
    assert sorted(manifest(deployed)) == ["sql"]
    assert cli("plan", "--detailed-exitcode")[0] == 0


def test_rollback_to_an_earlier_version_syncs_the_volume_to_its_adapters(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0  # hot-add onto v1
    yaml = project.deployments / "alpha.yaml"
    yaml.write_text(yaml.read_text().replace("gpu: A10G", "gpu: L40S"))
    git_commit(project.root, "alpha on L40S")
    assert cli("apply", "--yes")[0] == 0  # v2 lists sql and other
    code, out, err = cli("rollback", "alpha")
    assert code == 0, out + err
    assert "v3 now serves what v1 deployed" in out
    assert sorted(manifest(deployed)) == ["sql"]  # what v1 declares
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "~ update    alpha  (v3 " in out and "gpu: A10G → L40S" in out


def test_a_state_file_that_is_not_one_is_ignored_with_a_note(deployed, cli):
    deployed.fake.write_volume_file(VOLUME, STATE_FILE, "{not json")
    code, out, _ = cli("plan", "--detailed-exitcode")
    assert code == 2 and "^ hot-add   alpha" in out
    assert (
        "note: alpha: deployer-state.json of volume alpha-adapters is ignored: it is not JSON"
        in out
    )


# -- the state file and Modal's volume commands ---------------------------------------------------


def test_the_state_file_reads_back_and_refuses_what_is_not_one():
    state = HotAddState("ab" * 15, "cd" * 32, (("sql", "org/sql@0123"),), "abc1234")
    assert parse_state(state_text(state)) == state
    for text, why in [
        ("[]", "not a JSON object"),
        ('{"deployed_hash": "x", "desired_hash": "y", "adapters": []}', "hexadecimal"),
        ('{"deployed_hash": "ab", "desired_hash": "cd", "adapters": [1]}', "adapters must"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_state(text)


def test_modal_cli_reads_and_writes_one_file_of_a_volume(project, modal_world):
    modal = ModalCli("main")
    assert modal.read_volume_file("nowhere-adapters", STATE_FILE) is None  # no such volume
    modal_world.fake.run(_dynamic_app(project), "stage_adapters")  # creates the volume
    assert modal.read_volume_file("a-adapters", STATE_FILE) is None  # no such file
    modal.write_volume_file("a-adapters", STATE_FILE, '{"x": 1}\n')
    modal.write_volume_file("a-adapters", STATE_FILE, '{"x": 2}\n')  # replaced
    assert modal.read_volume_file("a-adapters", STATE_FILE) == '{"x": 2}\n'
    gets = [a for a in modal_world.argv() if a[:2] == ["volume", "get"]]
    assert gets[-1][2:4] == ["a-adapters", STATE_FILE] and gets[-1][-3:] == [
        "--force",
        "--env",
        "main",
    ]


def _dynamic_app(project):
    return project.write(
        "build/a/app.py",
        'APP_NAME = "a"\nSERVED_MODEL_NAME = "m"\nADAPTERS = {"x": {"repo": "o/x", "revision": "c"}}\n'
        "def stage_adapters():\n    pass\n",
    )


# -- the smoke check of an updated adapter: its new copy answers, not the one loaded before ------


def models_card(world, model: str) -> dict:
    request = urllib.request.Request(
        f"{world.server.url}/alpha/v1/models", headers={"Authorization": "Bearer test-key"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        cards = json.loads(reply.read())["data"]
    return next(c for c in cards if c["id"] == model)


def test_the_deployer_names_staged_folders_as_the_runtime_does():
    spec = importlib.util.spec_from_file_location(
        "deployer_runtime_under_test", REPO / "templates" / "deployer_runtime.py"
    )
    runtime = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtime)
    for name, label in [
        ("sql", "org/sql@" + "0123456789abcdef" * 2 + "01234567"),
        ("other", "path:/root/sources/adapters/other@sha256:0123456789abcdef"),
        ("ünï.v2", "path:/root/sources/adapters/ünï@sha256:ffff"),
    ]:
        assert staged_folder(name, label) == runtime.staged_folder_name(name, label)
        assert staged_folder(name, label).startswith(f"{name}@")


def test_an_updated_adapter_passes_only_once_its_new_copy_answers(deployed, project, cli):
    assert cli("apply", "--yes")[0] == 0
    earlier = manifest(deployed)["other"]["folder"]
    assert chat(deployed, "other") == 200
    assert models_card(deployed, "other")["root"] == f"/root/adapters/{earlier}"
    adapter(project, "other", weights="v2")
    git_commit(project.root, "other retrained")

    code, out, err = cli("apply", "--yes")
    assert code == 0, out + err
    staged = manifest(deployed)["other"]["folder"]
    assert staged != earlier and staged.startswith("other@")
    # The first answer came from the copy loaded before: the check waited for the new one.
    assert f"other not served from {staged} yet (it answered from /root/adapters/{earlier}" in err
    assert models_card(deployed, "other")["root"] == f"/root/adapters/{staged}"


def test_an_updated_adapter_whose_new_copy_never_loads_is_taken_out_again(
    deployed, project, cli, monkeypatch
):
    import deployer.deploy.hot_add

    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_SMOKE_SECONDS", 0.3)
    monkeypatch.setattr(deployer.deploy.hot_add, "HOT_ADD_RETRY_SECONDS", 0.1)
    assert cli("apply", "--yes")[0] == 0
    earlier = manifest(deployed)["other"]
    assert chat(deployed, "other") == 200
    deployed.fake.adapter_reload_lag("alpha", None)  # its containers never reload the volume
    adapter(project, "other", weights="v2")
    git_commit(project.root, "other retrained")

    code, out, _ = cli("apply", "--yes")
    assert code == 1
    (row,) = [line for line in out.splitlines() if line.startswith("alpha ")]
    assert "ROLLED BACK" in row and "an earlier copy" in row
    assert "other taken out of the adapters volume again (v1 serves as before)" in out
    assert manifest(deployed)["other"]["source"] == earlier["source"]
    assert cli("plan", "--detailed-exitcode")[0] == 2  # still to do
