"""Where the paths of a deployment lead: links and `..` out of the repository, link chains longer
than realpath follows, links into .git or to ignored files, special files (FIFOs, /proc), folders
nested too deep, and a Hub revision that would climb out of the cache. What lies outside is never
read, quoted or uploaded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ..conftest import MINIMAL, link_chain
from .helpers import LLAMA_CONFIG, LOCAL_MODEL_DEPLOYMENT, local_model


def test_a_symlink_out_of_the_repository_is_refused(project, cli, tmp_path_factory, monkeypatch):
    outside = tmp_path_factory.mktemp("home") / ".ssh"
    outside.mkdir()
    (outside / "id_ed25519").write_text("private key")
    (project.root / ".git").mkdir()
    (project.root / "adapters").mkdir()
    (project.root / "adapters" / "innocent").symlink_to(outside)
    project.deployment(
        "a", MINIMAL + "adapters:\n  - name: innocent\n    path: ../adapters/innocent\n"
    )
    code, out, _ = cli("validate")
    assert code == 1
    assert (
        "deployments/a.yaml:10:11: error: adapter 'innocent' folder "
        "'../adapters/innocent' resolves through a symlink to" in out
    )
    assert "outside the repository" in out and "DEPLOYER_ALLOW_OUTSIDE_REPO=1" in out
    code, _, _ = cli("render")
    assert code == 1 and not (project.root / "build").exists()
    monkeypatch.setenv("DEPLOYER_ALLOW_OUTSIDE_REPO", "1")  # the operator's choice, not the YAML's
    code, out, _ = cli("validate")
    assert "outside the repository" not in out


def test_a_relative_path_climbing_out_of_the_repository_is_refused(project, cli):
    (project.root / ".git").mkdir()
    project.deployment(
        "a",
        MINIMAL.replace(
            "base_model:\n  repo: Qwen/Qwen3-4B-Instruct-2507",
            "base_model:\n  path: ../../../etc\n  served_name: base",
        ),
    )
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "error: base model folder '../../../etc' resolves to " in out
        and ", outside the repository" in out
    )


def test_a_path_spelled_through_a_link_and_back_is_judged_as_it_leads(
    project, cli, tmp_path_factory
):
    # abspath folds `out/../m` into `m`, but `out` is a link leading elsewhere: with a.yaml (the
    # plain `m`) checked first, a memo of resolved paths keyed by abspath would pass b.yaml's.
    outside = tmp_path_factory.mktemp("outside")
    (outside / "m").mkdir()
    (project.root / "models" / "m").mkdir(parents=True)
    (project.root / "models" / "out").symlink_to(outside / "m")
    project.deployment("a", MINIMAL + "adapters: [{name: a, path: ../models/m}]\n")
    project.deployment("b", MINIMAL + "adapters: [{name: a, path: ../models/out/../m}]\n")
    code, out, _ = cli("validate")
    assert "b.yaml" in out and "outside the repository" in out, out


def test_links_above_the_repository_are_the_machines_layout(tmp_path):
    # macOS's /tmp -> /private/tmp: a repository reached through a link above it is still itself.
    from deployer.sources.folders import outside_repository

    (tmp_path / "real" / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "real" / "repo" / "deployments").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    folder = tmp_path / "alias" / "repo" / "deployments"
    assert outside_repository(folder / "m", folder) is None
    assert outside_repository(tmp_path / "real" / "elsewhere", folder) == (
        tmp_path / "real" / "repo"
    )


def test_a_link_chain_too_long_for_realpath_is_not_taken_for_a_path_inside(tmp_path):
    from deployer.core.paths import real, within

    (tmp_path / "repo").mkdir()
    (tmp_path / "secret.txt").write_text("SENTINEL")
    chain = link_chain(tmp_path / "repo")
    sneaky = tmp_path / "repo" / chain / ".." / "secret.txt"
    assert sneaky.read_text() == "SENTINEL"  # the kernel follows it out of repo/
    assert Path(os.path.realpath(sneaky)).is_relative_to(tmp_path / "repo")  # realpath says inside
    assert real(sneaky) is None and not within(sneaky, tmp_path / "repo")


def test_a_deployment_file_linked_out_of_the_repository_is_not_read(project, cli, monkeypatch):
    secret = project.root.parent / f"{project.root.name}-outside.yaml"
    secret.write_text("MODAL_TOKEN_SECRET=as-SENTINEL\n")
    (project.deployments / "env.yaml").symlink_to(secret)
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


def test_a_deployment_file_named_on_the_command_line_is_not_read_through_a_link_out(project, cli):
    secret = project.root.parent / f"{project.root.name}-named.yaml"
    secret.write_text("token: hf_SENTINEL\n")
    (project.deployments / "b.yaml").symlink_to(secret)
    code, out, _ = cli("validate", "deployments/b.yaml")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


@pytest.mark.parametrize("target", [".env", ".git/config"])
def test_a_deployment_file_linked_inside_the_repository_is_not_read(project, cli, target):
    (project.root / ".git").mkdir()
    (project.root / target).write_text("OPENAI_API_KEY=sk-SENTINEL\n")
    (project.deployments / "dotenv.yaml").symlink_to(f"../{target}")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out
    assert (
        "is a link; deployment files are read only as plain files"
        if target == ".env"
        else "inside the repository's .git folder"
    ) in out


def test_a_deployments_folder_linked_out_of_the_repository_is_not_read(
    project, cli, tmp_path_factory
):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    (project.root / "linked").symlink_to(outside)
    code, out, _ = cli("validate", "linked")
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


def test_a_deployments_folder_reached_through_a_link_chain_is_not_read(
    project, cli, tmp_path_factory
):
    outside = project.root.parent / f"{project.root.name}-elsewhere"
    outside.mkdir()
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    chain = link_chain(project.root)
    code, out, _ = cli("validate", f"{project.root}/{chain}/../{outside.name}")
    assert code == 1 and "SENTINEL" not in out and "cannot be followed" in out


@pytest.mark.parametrize("named", ["deployments", "deployments/creds.yaml"])
def test_a_linked_folder_with_a_git_folder_of_its_own_does_not_become_the_repository(
    project, cli, tmp_path_factory, named
):
    # The link's own .git would make "the repository" wherever the link points.
    (project.root / ".git").mkdir()
    outside = tmp_path_factory.mktemp("outside")
    (outside / ".git").mkdir()
    (outside / "creds.yaml").write_text("token: hf_SENTINEL\n")
    project.deployments.rmdir()
    project.deployments.symlink_to(outside)
    code, out, _ = cli("validate", named)
    assert code == 1 and "SENTINEL" not in out and "outside the repository" in out


@pytest.mark.parametrize("shard", ["../../secret.txt", "/proc/self/environ", "linked.safetensors"])
def test_a_weight_index_cannot_make_validate_read_outside_the_model_folder(project, cli, shard):
    secret = project.root.parent / f"{project.root.name}-secret.txt"
    secret.write_bytes(b"hf_SENTINEL_token")
    model = local_model(project)
    if shard == "linked.safetensors":
        (model / "linked.safetensors").symlink_to(secret)
    (model / "model.safetensors.index.json").write_text(
        json.dumps(
            {"weight_map": {"x": shard.replace("../../secret.txt", f"../../../{secret.name}")}}
        )
    )
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, err = cli("validate")
    # The first 8 bytes as a number ("header of N bytes") would leak them.
    assert (
        str(int.from_bytes(b"hf_SENTI", "little")) not in out + err and "SENTINEL" not in out + err
    )
    # A link out of the repository keeps the whole folder from being read.
    assert (
        "links out of the repository"
        if shard == "linked.safetensors"
        else "outside the model folder"
    ) in out


def test_a_link_chain_in_a_model_folder_is_refused_and_never_read(project, cli, monkeypatch):
    from deployer.deploy.desired import folder_hash

    secret = project.root.parent / f"{project.root.name}-id_rsa"
    secret.write_text("SENTINEL")
    model = local_model(project, "{}")
    chain = link_chain(project.root)
    (model / "notes.txt").symlink_to(f"../../{chain}/../{secret.name}")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert code == 1 and "notes.txt links out of the repository" in out and "SENTINEL" not in out
    # plan hashes a git ref's tree without validating it: the link is named there, not read (a
    # chain to /proc/kmsg would block forever), so what it leads to does not change the hash.
    before = folder_hash(model)
    secret.write_text("SENTINEL, changed")
    assert folder_hash(model) == before


def test_a_model_folder_may_not_link_into_the_git_folder(project, cli):
    (project.root / ".git").mkdir()
    (project.root / ".git" / "config").write_text(
        "[http]\n  extraheader = AUTHORIZATION: basic SENTINEL\n"
    )
    model = local_model(project, "{}")
    (model / "git-config").symlink_to("../../.git/config")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert code == 1 and "git-config links out of the repository" in out and "SENTINEL" not in out


def test_a_link_in_a_model_folder_to_an_ignored_file_elsewhere_in_the_repository_is_refused(
    project, cli
):
    # apply uploads what links point at: a link inside the repository but out of the folder
    # would upload the operator's .env as the chat template.
    project.write(".gitignore", ".env\n")
    project.write(".env", "HF_TOKEN=hf_sentinel\n")
    project.write("models/m/config.json", "{}")
    project.write("models/m/store/tokenizer.json", "{}")
    (project.root / "models/m/tokenizer.json").symlink_to(
        "store/tokenizer.json"
    )  # inside the folder: fine
    (project.root / "models/m/chat_template.jinja").symlink_to("../../.env")
    project.deployment("x", LOCAL_MODEL_DEPLOYMENT)
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "chat_template.jinja links out of the folder" in out
        and "tokenizer.json" not in out
    )
    assert "hf_sentinel" not in out


def test_a_folder_holding_the_repositorys_git_folder_is_never_uploaded(project, cli):
    # path: .. (the repository itself) would upload .git/config with checkout's token.
    (project.root / ".git").mkdir()
    (project.root / "config.json").write_text(LLAMA_CONFIG)
    project.write("models/m/.git/config", "[remote]\n")
    project.write("models/m/config.json", LLAMA_CONFIG)
    for path in ("..", "../models/m"):
        project.deployment(
            "x",
            f"base_model: {{path: '{path}', served_name: m}}\ngpu: A10G\nvllm: {{version: "
            f"'0.11.2'}}\nauth: {{proxy: true}}\n",
        )
        code, out, _ = cli("validate")
        assert code == 1 and ".git is a git folder" in out, out


def test_an_adapter_folder_that_is_refused_is_not_read_either(project, cli):
    outside = project.root.parent / f"{project.root.name}-adapter_config.json"
    outside.write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "bias": "all-SENTINEL"})
    )
    adapter = project.root / "adapters" / "a"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").symlink_to(outside)
    project.deployment("x", MINIMAL + "adapters:\n  - {name: a, path: ../adapters/a}\n")
    code, out, _ = cli("validate")
    assert (
        code == 1
        and "adapter_config.json links out of the repository" in out
        and "SENTINEL" not in out
    )


def _local_adapter_deployment(project) -> Path:
    from ..tiny_model import build_base_model, build_lora_adapter

    base = build_base_model(project.root / "models" / "tiny")
    adapter = build_lora_adapter(project.root / "adapters" / "a", str(base), 8, seed=1)
    project.deployment(
        "x",
        "base_model: {path: ../models/tiny, served_name: tiny}\nadapters:\n  - {name: "
        "a, path: ../adapters/a}\ngpu: T4\nvllm: {version: '0.32.0'}\nauth: {proxy: "
        "true}\n",
    )
    return adapter


def test_files_linked_out_of_the_repository_inside_an_adapter_folder_are_refused(
    project, cli, tmp_path_factory
):
    adapter = _local_adapter_deployment(project)
    secret = tmp_path_factory.mktemp("home") / "id_rsa"
    secret.write_text("PRIVATE-SENTINEL")
    (adapter / "extra").symlink_to(secret)
    os.mkfifo(adapter / "pipe")
    code, out, _ = cli("validate")
    assert code == 1 and "SENTINEL" not in out
    assert "adapter 'a' folder '../adapters/a': extra links out of the repository" in out
    assert "adapter 'a' folder '../adapters/a': pipe is not a plain file or folder" in out


def test_a_folder_nested_too_deep_is_refused_not_a_crash(project, cli):
    # Python 3.11's os.walk and Path.rglob recurse once per level; the deployer's walks stop past
    # 100 levels. 150 here, not thousands: pytest's own clean-up recurses too.
    adapter = project.root / "adapters" / "a"
    (adapter / ("d/" * 150)).mkdir(parents=True)
    (adapter / ("d/" * 150) / "f").write_text("x")
    (adapter / "adapter_config.json").write_text(
        json.dumps({"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]})
    )
    project.deployment("x", MINIMAL + "adapters: [{name: a, path: ../adapters/a}]\n")
    code, out, err = cli("validate")
    assert code == 1 and "internal error" not in err
    assert "is nested more than 100 folders deep" in out


def test_deploy_hashes_never_read_through_a_link_to_proc(tmp_path):
    """A git ref's tree is hashed without being validated: a committed link to /proc/kmsg (a read
    that blocks once the log is drained) or /proc/self/pagemap (EINVAL) is named, not read."""
    from deployer.deploy.desired import folder_hash

    hashes = set()
    for target in ("/proc/kmsg", "/proc/self/pagemap", "/proc/self/environ"):
        folder = tmp_path / target.replace("/", "_")
        folder.mkdir()
        (folder / "extra").symlink_to(target)
        hashes.add(folder_hash(folder))
    assert len(hashes) == 3


@pytest.mark.parametrize("revision", ["pr/../../../../../../proc/kmsg", "a//b", "main/"])
def test_a_revision_cannot_climb_out_of_the_hugging_face_cache(project, cli, revision):
    # try_to_load_from_cache opens refs/<revision>: pr/../../.. would lead anywhere (/proc/kmsg
    # blocks).
    project.deployment(
        "x",
        MINIMAL.replace(
            "repo: Qwen/Qwen3-4B-Instruct-2507",
            f"repo: Qwen/Qwen3-4B-Instruct-2507\n  revision: '{revision}'",
        ),
    )
    code, out, _ = cli("validate")
    assert code == 1 and "invalid base_model.revision" in out and "no '..'" in out
