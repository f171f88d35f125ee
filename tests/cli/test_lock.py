"""`deployer lock`, render from the lock and `--locked`, against the stand-in Hub (tests/fake_hub.py).

uv's resolution is the one part not run here: `compile_requirements` answers with a package set in
uv's own format (tests/sources/test_packages.py runs uv itself against the registry)."""

from __future__ import annotations

import json

import pytest

from deployer.sources import packages

from ..conftest import git_commit
from .hub_stand_ins import BASE, DEPLOYMENT, constants, go_offline, lora, rules


def test_lock_resolves_the_base_and_adapters_and_the_app_names_the_commits(
    project, online, resolver, cli
):
    project.deployment("d", DEPLOYMENT)
    code, out, err = cli("lock")
    assert code == 0, err
    assert "written  lock/sources.yaml" in out
    assert cli("render")[0] == 0
    values = constants(project.root / "build" / "d" / "app.py")
    assert values["BASE_MODEL_REVISION"] == online.head(BASE)
    assert values["ADAPTERS"] == {
        "chess": {"repo": "org/chess-lora", "revision": online.head("org/chess-lora")},
        "sql": {"repo": "org/sql-lora", "revision": online.head("org/sql-lora", "v1")},
    }
    app = (project.root / "build" / "d" / "app.py").read_text()
    assert '.uv_pip_install(requirements=[str(HERE / "requirements.txt")])' in app
    requirements = (project.root / "build" / "d" / "requirements.txt").read_text()
    assert "\ntorch==2.9.0 \\\n" in requirements and "\ntransformers==4.57.6 \\\n" in requirements
    # What the image asks for (vLLM, the schema's default image.pip), for Modal's platform.
    assert resolver.calls == [
        (("vllm==0.11.2", "huggingface-hub==0.36.0"), "3.12", "x86_64-manylinux_2_28")
    ]


def test_a_branch_moving_upstream_changes_no_rendered_byte(project, online, resolver, cli):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0 and cli("render")[0] == 0
    app = project.root / "build" / "d" / "app.py"
    before = app.read_bytes()
    online.push("org/chess-lora", {"adapter_model.safetensors": "retrained"})
    assert cli("lock")[1].strip() == "lock/ is up to date"  # plain lock keeps what is locked
    code, out, _ = cli("render")
    assert code == 0 and out.split()[0] == "unchanged" and app.read_bytes() == before


def test_upgrade_moves_the_branches_keeps_the_tag_and_says_what_moved(
    project, online, resolver, cli
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    old_chess, tag = online.head("org/chess-lora"), online.head("org/sql-lora", "v1")
    new_chess = online.push("org/chess-lora", {"adapter_model.safetensors": "retrained"})
    online.push("org/sql-lora", {"adapter_model.safetensors": "retrained"})  # main, not v1
    resolver.torch = "2.9.1"
    code, out, err = cli("lock", "--upgrade")
    assert code == 0, err
    assert f"d: adapter 'chess' (org/chess-lora@main): {old_chess[:12]} → {new_chess[:12]}" in out
    assert "torch 2.9.0 → 2.9.1" in out
    assert "sql" not in out and "base model" not in out  # the tag and main of the base stayed
    cli("render")
    values = constants(project.root / "build" / "d" / "app.py")
    assert values["ADAPTERS"]["chess"]["revision"] == new_chess
    assert values["ADAPTERS"]["sql"]["revision"] == tag


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("  - {name: sql, repo: org/sql-lora, revision: v1}\n", "", None),  # fewer is covered
        (
            "  - {name: sql, repo: org/sql-lora, revision: v1}\n",
            "  - {name: sql, repo: org/sql-lora, revision: v1}\n"
            "  - {name: more, repo: org/chess-lora}\n",
            "adapter 'more' (org/chess-lora@main) is not in lock/sources.yaml",
        ),
        ("revision: v1", "revision: main", "is locked as org/sql-lora@v1"),
        ('version: "0.11.2"', 'version: "0.32.0"', "vLLM 0.11.2 (the YAML now says 0.32.0)"),
        (
            "gpu: H100\n",
            "gpu: H100\nimage: {pip: [numpy==2.0.0]}\n",
            "image.pip ['huggingface-hub==0.36.0'] (the YAML now says ['numpy==2.0.0'])",
        ),
        ("gpu: H100\n", "gpu: H100\nimage: {python: '3.11'}\n", "Python 3.12"),
    ],
)
def test_an_edit_the_lock_does_not_cover_fails_validate_locked(
    project, online, resolver, cli, old, new, said
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    assert cli("validate", "--locked")[0] == 0
    project.deployment("d", DEPLOYMENT.replace(old, new))
    code, out, _ = cli("validate", "--locked")
    if said is None:
        assert code == 0
        return
    assert code == 1 and said in out and "(--locked)" in out
    assert "hint: run `deployer lock` and commit lock/" in out
    code, found, messages = rules(cli)  # without --locked: a warning
    assert code == 0 and "lock.missing" in found and said in messages


def test_render_from_the_lock_needs_no_hub(project, online, resolver, cli, monkeypatch):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0 and cli("render")[0] == 0
    app = project.root / "build" / "d" / "app.py"
    locked = constants(app)
    app.unlink()
    go_offline(online, monkeypatch)
    code, _, err = cli("render", "--locked")
    assert code == 0, err
    assert not online.requests
    offline = constants(app)
    for name in ("BASE_MODEL_REVISION", "ADAPTERS"):
        assert offline[name] == locked[name]
    assert (project.root / "build" / "d" / "requirements.txt").is_file()


def test_lock_without_the_hub_names_each_source_and_leaves_the_lock_alone(
    project, online, resolver, cli, monkeypatch
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    sources = project.root / "lock" / "sources.yaml"
    before = sources.read_bytes()
    go_offline(online, monkeypatch)
    code, _, err = cli("lock", "--upgrade")
    assert code == 1
    for source in (
        "base model (Qwen/Qwen3-4B-Instruct-2507@main)",
        "adapter 'chess'",
        "adapter 'sql'",
    ):
        assert f"could not resolve d: {source}" in err
    assert "nothing written" in err and sources.read_bytes() == before


def test_allow_unresolved_locks_the_packages_and_says_what_floats(
    project, online, resolver, cli, monkeypatch
):
    project.deployment("d", DEPLOYMENT)
    go_offline(online, monkeypatch)
    code, out, err = cli("lock", "--allow-unresolved")
    assert code == 0 and "3 Hub source(s) recorded as unresolved" in err
    text = (project.root / "lock" / "sources.yaml").read_text()
    assert text.count("commit: unresolved") == 3 and "why: the Hub is unreachable" in text
    code, found, _ = rules(cli)
    assert code == 0 and found.count("lock.unresolved") == 3
    assert "run `deployer lock` where the Hub is reachable" in cli("validate")[1]
    code, found, messages = rules(cli, "--locked")
    assert code == 1 and found.count("lock.unresolved") == 3 and "(--locked)" in messages
    assert cli("render")[0] == 0
    assert (project.root / "build" / "d" / "requirements.txt").is_file()  # packages: locked
    values = constants(project.root / "build" / "d" / "app.py")
    assert values["BASE_MODEL_REVISION"] is None  # the Hub source: as written


def test_an_unlocked_deployment_renders_as_before_with_a_warning(project, cli):
    project.deployment("d", DEPLOYMENT)
    code, out, err = cli("render")
    assert code == 0 and "written  build/d/app.py" in out
    assert "warning: d is not locked" in err
    found = json.loads(cli("render", "--format", "json")[1])["diagnostics"]
    assert "lock.missing" in [d["rule"] for d in found]
    assert "org/chess-lora@main" in err and "the image's packages beyond vllm==0.11.2" in err
    assert not (project.root / "build" / "d" / "requirements.txt").exists()
    assert "requirements=" not in (project.root / "build" / "d" / "app.py").read_text()
    code, found, _ = rules(cli)
    assert code == 0 and not [r for r in found if r.startswith("lock.")]  # no lock kept: quiet
    code, out, _ = cli("validate", "--locked")
    assert code == 1 and "d is not locked: there is no lock/sources.yaml" in out


def test_deployments_sharing_image_settings_share_one_package_set(project, online, resolver, cli):
    project.deployment("a", DEPLOYMENT)
    project.deployment("b", DEPLOYMENT.replace("H100", "A100-80GB"))
    assert cli("lock")[0] == 0
    assert len(list((project.root / "lock" / "images").glob("*.txt"))) == 1
    assert len(resolver.calls) == 1


def test_a_package_set_that_cannot_be_resolved_writes_nothing(project, online, cli, monkeypatch):
    def fails(*args, **kwargs):
        raise packages.PackageProblem("uv pip compile failed: no version of vllm==0.11.2")

    monkeypatch.setattr(packages, "compile_requirements", fails)
    project.deployment("d", DEPLOYMENT)
    code, _, err = cli("lock")
    assert code == 1 and "no version of vllm==0.11.2" in err and "nothing written" in err
    assert not (project.root / "lock").exists()


def test_upgrade_of_an_unknown_deployment_is_a_usage_error(project, online, resolver, cli):
    project.deployment("d", DEPLOYMENT)
    code, _, err = cli("lock", "--upgrade", "nope")
    assert code == 2 and "no deployment named 'nope'" in err


def flag_value(flags: list[str], option: str) -> str | None:
    return flags[flags.index(option) + 1] if option in flags else None


def test_validate_judges_the_adapter_config_at_the_locked_commit_until_upgraded(
    project, online, resolver, cli
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    locked = online.head("org/chess-lora")
    online.push("org/chess-lora", {"adapter_config.json": lora(64)})  # retrained at rank 64
    online.requests.clear()
    assert cli("render")[0] == 0
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--max-lora-rank") == "8"  # the rank of what the app downloads
    assert (f"/org/chess-lora/resolve/{locked}/adapter_config.json", None) in online.requests
    assert not [
        path for path, _ in online.requests if path.startswith("/org/chess-lora/resolve/main")
    ]
    assert cli("lock", "--upgrade")[0] == 0
    assert cli("render")[0] == 0
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--max-lora-rank") == "64"


def test_the_base_models_config_is_read_at_its_locked_commit(project, online, resolver, cli):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    locked = online.head(BASE)
    online.push(BASE, {"config.json": "not JSON"})
    code, found, _ = rules(cli)
    assert code == 0 and not [r for r in found if r.startswith(("model.", "sources."))]
    assert (f"/{BASE}/resolve/{locked}/config.json", None) in online.requests


def test_without_a_lock_entry_configs_are_read_at_the_revision_as_written(
    project, online, resolver, cli
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    project.deployment(
        "d",
        DEPLOYMENT.replace(
            "{name: chess, repo: org/chess-lora}",
            "{name: chess, repo: org/chess-lora, revision: v2}",
        ),
    )
    online.add("org/chess-lora", {"adapter_config.json": lora(16)}, revision="v2")
    online.requests.clear()
    assert cli("render")[0] == 0
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--max-lora-rank") == "16"
    assert ("/org/chess-lora/resolve/v2/adapter_config.json", None) in online.requests


WITH_REVISION = DEPLOYMENT.replace(
    "{repo: Qwen/Qwen3-4B-Instruct-2507}", "{repo: Qwen/Qwen3-4B-Instruct-2507, revision: main}"
)


def test_vllms_revision_carries_the_locked_commit(project, online, resolver, cli):
    project.deployment("d", WITH_REVISION)
    assert cli("render")[0] == 0  # unlocked: as written
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--revision") == "main"
    assert cli("lock")[0] == 0 and cli("render")[0] == 0
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--revision") == online.head(BASE)
    assert "--tokenizer-revision" not in flags  # the tokenizer is the model's folder


def test_a_tokenizer_of_another_repo_keeps_the_revision_as_written(project, online, resolver, cli):
    # vLLM reads the tokenizer at --revision unless told otherwise: the base model's commit is no
    # revision of another repo.
    online.add("org/tok", {"tokenizer_config.json": "{}"})
    project.deployment(
        "d",
        WITH_REVISION.replace(
            "{max-model-len: 32768}", "{max-model-len: 32768, tokenizer: org/tok}"
        ),
    )
    assert cli("lock")[0] == 0 and cli("render")[0] == 0
    flags = constants(project.root / "build" / "d" / "app.py")["VLLM_FLAGS"]
    assert flag_value(flags, "--revision") == online.head(BASE)
    assert flag_value(flags, "--tokenizer-revision") == "main"
    assert ("/org/tok/resolve/main/tokenizer_config.json", None) in online.requests


def test_plan_notes_each_locked_branch_that_moved_upstream(
    project, online, resolver, modal_world, cli, tmp_path, monkeypatch
):
    project.deployment("a", DEPLOYMENT)
    project.deployment("b", DEPLOYMENT.replace("H100", "A100-80GB"))
    assert cli("lock")[0] == 0
    git_commit(project.root, "locked")
    old = online.head("org/chess-lora")
    new = online.push("org/chess-lora", {"adapter_model.safetensors": "retrained"})
    online.push("org/sql-lora", {"adapter_model.safetensors": "retrained"})  # main, not v1
    online.requests.clear()
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, out, err = cli("plan", "--format", "github")
    assert code == 0, err
    for name in ("a", "b"):
        assert (
            f"note: adapter 'chess' (org/chess-lora@main): main is now {new[:7]}, locked "
            f"{old[:7]}: run `deployer lock --upgrade {name}`"
        ) in out
    assert out.count("is now") == 2  # the tag and the base model stayed
    assert "not checked" not in out
    # One request per repo@revision, however many deployments share it.
    asked = [path for path, _ in online.requests if path.startswith("/api/models/")]
    assert sorted(asked) == sorted(
        {
            f"/api/models/{BASE}/revision/main",
            "/api/models/org/chess-lora/revision/main",
            "/api/models/org/sql-lora/revision/v1",
        }
    )
    assert f"main is now {new[:7]}, locked {old[:7]}: run \\`deployer lock --upgrade a\\`" in (
        summary.read_text()
    )
    plan = json.loads(cli("plan", "--format", "json")[1])
    assert [
        (m["deployment"], m["revision"], m["locked"], m["upstream"]) for m in plan["upstream"]
    ] == [
        ("a", "main", old, new),
        ("b", "main", old, new),
    ]
    (action,) = [a for a in plan["actions"] if a["name"] == "a"]
    assert any("run `deployer lock --upgrade a`" in note for note in action["notes"])
    assert plan["notes"] == []


def test_plan_with_the_hub_unreachable_says_upstream_was_not_checked(
    project, online, resolver, modal_world, cli, monkeypatch
):
    project.deployment("d", DEPLOYMENT)
    assert cli("lock")[0] == 0
    git_commit(project.root, "locked")
    go_offline(online, monkeypatch)
    code, out, err = cli("plan")
    assert code == 0, err
    (note,) = [line for line in out.splitlines() if "upstream not checked" in line]
    assert note.startswith("note: upstream not checked for 3 locked branch(es) or tag(s)")
    assert "the Hub is unreachable" in note and "is now" not in out
    plan = json.loads(cli("plan", "--format", "json")[1])
    assert plan["upstream"] == [] and len(plan["notes"]) == 1


def test_plan_of_a_project_without_a_lock_asks_the_hub_nothing(project, online, modal_world, cli):
    project.deployment("d", DEPLOYMENT)
    git_commit(project.root, "unlocked")
    online.requests.clear()
    code, out, _ = cli("plan")
    assert code == 0 and "upstream" not in out
    assert not [path for path, _ in online.requests if path.startswith("/api/models/")]
