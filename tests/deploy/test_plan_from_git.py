"""plan and apply offline, from git: a ref's desired state (plan --against REF), its export
(only what its deployments read, ignored weights borrowed from the working tree), and the
project id that tells this repository's apps from any other's. Run against the fake Modal
(tests/fake_modal.py), as tests/deploy/test_plan_apply.py.
"""

from __future__ import annotations

import json
import os

import pytest

from deployer.deploy.commit_files import RefError

from ..conftest import ADAPTER_CONFIG, FAST, git, git_commit, two, with_local_adapter


def test_where_the_app_is_rendered_from_changes_nothing(
    project, modal_world, cli, tmp_path_factory, monkeypatch
):
    with_local_adapter(project)
    assert cli("apply", "--yes")[0] == 0
    code, out, _ = cli(
        "plan", "--detailed-exitcode", "--out", str(tmp_path_factory.mktemp("elsewhere") / "apps")
    )
    assert code == 0, out
    (project.root / "sub").mkdir()
    monkeypatch.chdir(project.root / "sub")
    code, out, _ = cli("plan", "--detailed-exitcode", "--deployments", "../deployments")
    assert code == 0, out


def test_ignored_weights_and_lfs_pointers_compare_as_unchanged_offline(
    project, modal_world, cli, monkeypatch
):
    with_local_adapter(project, ignore="*.safetensors\n")
    monkeypatch.delenv("MODAL_TOKEN_ID")
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(project.root / "no-such.toml"))
    code, out, _ = cli(
        "plan", "--detailed-exitcode"
    )  # against HEAD, which has no copy of the weights
    assert code == 0, out
    project.write("adapters/sql/adapter_model.safetensors", "weights v2")
    code, out, _ = cli(
        "plan", "--detailed-exitcode"
    )  # git has no copy of ignored files: taken as unchanged
    assert code == 0, out

    import hashlib

    from deployer.deploy.desired import folder_hash

    real, pointer = (
        project.write("lfs/real/w.bin", "weights"),
        project.write("lfs/pointer/w.bin", ""),
    )
    text = (
        "version https://git-lfs.github.com/spec/v1\noid "
        f"sha256:{hashlib.sha256(b'weights').hexdigest()}\nsize 7\n"
    )
    pointer.write_text(text)
    assert folder_hash(real.parent) == folder_hash(pointer.parent)
    # Only a pointer exactly as git-lfs writes it: a chat template after its lines changed
    # without changing the hash (Modal uploads the file as it is).
    hashes = {folder_hash(pointer.parent)}
    for tail in ("{{ messages[0].content }}\n", "{% for m in messages %}EVIL{% endfor %}\n"):
        pointer.write_text(text + tail)
        hashes.add(folder_hash(pointer.parent))
    pointer.write_text(
        text.replace("size 7", "size 99999999999999999999")
    )  # every byte of a pointer counts
    hashes.add(folder_hash(pointer.parent))
    assert len(hashes) == 4


def test_a_ref_is_exported_only_as_far_as_its_deployments_read(
    project, modal_world, cli, tmp_path_factory
):
    # A commit can hold anything beside the deployments (datasets, a 2.5 GB blob that took 5 GB
    # of memory to export whole): only the deployments, templates and named folders are written,
    # links followed as the commit's own links lead.
    from deployer.deploy.commit_files import CommitFiles

    project.write(".gitignore", "build/\n")
    project.write("weights/sql/adapter_config.json", ADAPTER_CONFIG)
    project.write("weights/sql/blobs/w1", "weights v1")
    (project.root / "weights/sql/adapter_model.safetensors").symlink_to("blobs/w1")
    (project.root / "adapters").symlink_to("weights")
    project.write("data/dataset.bin", "x" * 100_000)
    project.write("data/*", "a name that is a glob")
    project.deployment("alpha", FAST + "adapters:\n  - name: sql\n    path: ../adapters/sql\n")
    git_commit(project.root, "a linked local adapter beside a dataset")
    code, out, _ = cli("plan", "--against", "HEAD", "--detailed-exitcode")
    assert code == 0 and "unchanged alpha" in out, (
        out
    )  # the ref hashes the adapter as the working tree does

    dest = tmp_path_factory.mktemp("export")
    files = CommitFiles(project.root, "HEAD", dest)
    assert files.add([dest / "deployments"]) and (dest / "deployments/alpha.yaml").is_file()
    assert (dest / "adapters").is_symlink() and (
        dest / "weights/sql/adapter_model.safetensors"
    ).is_symlink()  # every link at once
    assert not (dest / "weights/sql/adapter_config.json").exists() and not (dest / "data").exists()
    assert files.add([dest / "adapters/sql"])
    assert (dest / "adapters/sql/adapter_config.json").is_file() and (
        dest / "adapters/sql/adapter_model.safetensors"
    ).read_text() == "weights v1"
    assert not (dest / "data").exists()
    assert not files.add(
        [dest / "weights/sql", dest / "nowhere", dest / ".." / "elsewhere"]
    )  # already there, or not in the commit
    assert files.add([dest / "data/*"]) and sorted(p.name for p in (dest / "data").iterdir()) == [
        "*"
    ]


def test_ignored_weights_of_many_adapters_are_borrowed_with_one_git_process(
    project, modal_world, cli, monkeypatch
):
    import subprocess

    with_local_adapter(project, ignore="*.safetensors\n")
    adapters = "".join(f"  - name: a{i}\n    path: ../adapters/sql\n" for i in range(60))
    project.deployment("alpha", FAST + "adapters:\n" + adapters)
    git_commit(project.root, "sixty adapters on one folder")
    real_run, listings = subprocess.run, []

    def counting_run(command, *args, **kwargs):
        if "ls-files" in command:
            listings.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)
    code, out, _ = cli("plan", "--against", "HEAD", "--detailed-exitcode")
    assert code == 0, out
    assert len(listings) == 1 and listings[0][-1] == "adapters/sql"


def test_ignored_files_at_the_repository_root_never_reach_a_refs_hash(project, modal_world, cli):
    # A ref whose base model is the repository itself (`path: ..`) borrowed every ignored file at
    # the root, .env included, and the plan's hash for it changed with the secret in .env.
    project.write(".gitignore", "build/\n.env\n")
    plans = _plans_of_a_ref_with_a_local_model(
        project, cli, "..", lambda secret: project.write(".env", f"API_TOKEN={secret}\n")
    )
    assert len(plans) == 1


def test_a_gitignore_pattern_that_keeps_git_matching_for_minutes_is_a_clear_error(
    project, modal_world, cli, monkeypatch
):
    # git's wildcard matching slows down steeply with a pattern's `*`s; a committed line like this
    # one, and a long folder name, kept `git ls-files --ignored` busy for 13 s (four stars) to
    # minutes (six), and a timed-out listing was skipped: the plan reported changes that were not.
    import deployer.deploy.commit_files

    with_local_adapter(project)
    project.write("adapters/sql/" + "a" * 240 + "x/f", "data")
    git_commit(project.root, "a folder git cannot match the pattern against quickly")
    project.write(".gitignore", "build/\n*a*a*a*a*a*a*b\n")
    git(
        project.root, "commit", "-qam", "the pattern"
    )  # (`git add -A` would match it too, for minutes)
    monkeypatch.setattr(deployer.deploy.commit_files, "IGNORED_SECONDS", 1)
    code, out, err = cli("plan", "--against", "HEAD")
    assert (
        code == 1
        and "more than 1 s to list the git-ignored files" in err
        and "simplify them" in err
        and "Traceback" not in err
    )


def test_a_plan_parses_configs_within_one_budget_for_all_the_commits_it_reads(
    project, modal_world, cli, monkeypatch
):
    # Each check opened a budget of its own: a plan reading the working tree, a ref and the
    # commits Modal recorded parsed 1.6 GB of configs for each (16 adapters of 4 MB).
    from deployer.core import budget

    for name in ("a", "b", "c"):  # three contents: the ref's export makes one file of equal ones
        project.write(
            f"adapters/{name}/adapter_config.json",
            ADAPTER_CONFIG.replace("}", f', "name": "{name}"}}'),
        )
        project.write(f"adapters/{name}/adapter_model.safetensors", "weights")
    project.deployment(
        "alpha",
        FAST
        + "adapters:\n"
        + "".join(f"  - {{name: {n}, path: ../adapters/{n}}}\n" for n in "abc"),
    )
    git_commit(project.root, "three local adapters")
    raw = (project.root / "adapters/a/adapter_config.json").read_bytes()
    monkeypatch.setattr(budget, "MAX_RUN_PARSED", 4 * budget.parsed_size(raw))
    assert cli("validate")[0] == 0  # the working tree's three fit
    code, out, err = cli("plan", "--against", "HEAD")  # and the ref's first: its second is over
    assert (
        code == 1
        and "holds more deployment files or configs than the deployer reads in one command" in err
    )
    assert "update" not in out  # (a ref whose configs went unread compared as changed)


def test_the_commits_of_one_plan_share_the_time_for_listing_ignored_files(
    project, modal_world, monkeypatch
):
    # Each commit Modal recorded had 30 s of its own, and a RefError for one is skipped: four
    # recorded commits took a plan 121 s.
    import deployer.deploy.commit_files
    from deployer.deploy.desired import project_for
    from deployer.deploy.state import Layout, RefTrees

    commits = [with_local_adapter(project)]
    project.write("adapters/sql/" + "a" * 240 + "x/f", "data")
    for i in range(3):
        project.write("adapters/sql/notes.txt", str(i))
        commits.append(git_commit(project.root, f"commit {i}"))
    project.write(".gitignore", "build/\n*a*a*a*a*a*a*b\n")
    monkeypatch.setattr(deployer.deploy.commit_files, "IGNORED_SECONDS", 2)
    real_run, granted = deployer.deploy.commit_files.subprocess.run, []

    def timed_run(command, *args, **kwargs):
        if "--ignored" in command:
            granted.append(kwargs["timeout"])
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(deployer.deploy.commit_files.subprocess, "run", timed_run)
    with RefTrees(
        Layout.of(project.deployments, project.root / "build"), project_for(project.deployments)
    ) as trees:
        for commit in commits:
            with pytest.raises(RefError, match="to list the git-ignored files"):
                trees.desired_at(commit)
    # The seconds git was given: two for all four, then the least for each (not 4 x 2 s).
    assert len(granted) == 4 and sum(granted) < 3, granted


def test_each_commits_export_is_removed_once_its_desired_state_is_known(
    project, modal_world, monkeypatch, tmp_path_factory
):
    # A plan reads a commit per version Modal recorded; their exports all stayed until the end:
    # six of 300 MB of zeros (kilobytes in git) took 1.9 GB of TMPDIR at once.
    import tempfile

    from deployer.deploy.desired import project_for
    from deployer.deploy.state import Layout, RefTrees

    first = with_local_adapter(project)
    project.write("adapters/sql/notes.txt", "2")
    second = git_commit(project.root, "second")
    scratch = tmp_path_factory.mktemp("scratch")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with RefTrees(
        Layout.of(project.deployments, project.root / "build"), project_for(project.deployments)
    ) as trees:
        for commit in (first, second):
            assert "alpha" in trees.desired_at(commit)[1]
            assert list(scratch.iterdir()) == []


def test_an_adapter_folder_git_ignores_whole_still_compares_as_unchanged(
    project, modal_world, cli, monkeypatch
):
    with_local_adapter(project, ignore="adapters/\n")  # no copy of the folder at all in the commit
    code, out, _ = cli("plan", "--against", "HEAD", "--detailed-exitcode")
    assert code == 0, out


@pytest.mark.parametrize("ref_path", ["../.env", "ABSOLUTE/secrets", "../secrets/../.env"])
def test_a_ref_cannot_name_an_ignored_file_of_the_working_tree_into_its_hash(
    project, modal_world, cli, ref_path
):
    # The ref's missing `../.env` was borrowed from the working tree as an ignored file, and the
    # whole working tree counted as inside: the printed hash changed with the secret.
    project.write(".gitignore", "build/\n.env\nsecrets/\n")
    (project.root / "secrets").mkdir()
    ref_path = ref_path.replace("ABSOLUTE", str(project.root))

    def plant(secret):
        project.write(".env", f"API_TOKEN={secret}\n")
        project.write("secrets/token", secret)

    assert len(_plans_of_a_ref_with_a_local_model(project, cli, ref_path, plant)) == 1


def _plans_of_a_ref_with_a_local_model(project, cli, ref_path: str, plant) -> set[str]:
    """The plans against a commit whose model folder is `ref_path`, as `plant` changes a secret."""
    project.deployment(
        "alpha",
        FAST.replace(
            "  repo: Qwen/Qwen3-4B-Instruct-2507", f"  path: {ref_path}\n  served_name: m"
        ),
    )
    git_commit(project.root, "a model folder to compare with")
    project.write("models/m/config.json", "{}")
    project.deployment(
        "alpha",
        FAST.replace(
            "  repo: Qwen/Qwen3-4B-Instruct-2507", "  path: ../models/m\n  served_name: m"
        ),
    )
    git_commit(project.root, "a model folder inside")
    seen = set()
    for secret in ("hunter2", "hunter3"):
        plant(secret)
        code, out, err = cli("plan", "--against", "HEAD~1", "--format", "json")
        assert "internal error" not in err
        seen.add(json.dumps(json.loads(out)["actions"]))
    return seen


def test_a_refs_model_folder_outside_the_repository_is_never_read(
    project, modal_world, cli, tmp_path_factory
):
    # A commit's YAML is not validated before its hash is taken: `path: /etc` had every file
    # under /etc read into the hash the plan prints (a way to confirm a guess at /etc/shadow).
    outside = tmp_path_factory.mktemp("outside")
    os.mkfifo(outside / "blocks-a-reader")  # read, it would hang the plan
    plans = _plans_of_a_ref_with_a_local_model(
        project, cli, str(outside), lambda secret: (outside / "shadow").write_text(f"root:{secret}")
    )
    assert len(plans) == 1


def test_a_ref_with_a_link_where_the_working_tree_has_an_ignored_folder_plans(
    project, modal_world, cli
):
    project.write("models/m/config.json", "{}")
    (project.root / "models/m/sub").symlink_to("nowhere")
    project.deployment(
        "alpha",
        FAST.replace(
            "  repo: Qwen/Qwen3-4B-Instruct-2507", "  path: ../models/m\n  served_name: m"
        ),
    )
    git_commit(project.root, "a dangling link in the model folder")
    git(project.root, "rm", "-q", "models/m/sub")
    project.write("models/m/.gitignore", "sub/\n")
    project.write("models/m/sub/w.bin", "weights")
    git_commit(project.root, "an ignored folder in its place")
    code, out, err = cli("plan", "--against", "HEAD~1")
    assert "internal error" not in err and "alpha" in out, err


def test_a_committed_symlink_out_of_the_repository_does_not_break_plan(
    project, modal_world, cli, tmp_path_factory
):
    (project.root / "weights").symlink_to(tmp_path_factory.mktemp("big-disk"))
    two(project)
    assert cli("apply", "--yes")[0] == 0
    code, out, err = cli("plan", "--detailed-exitcode")
    assert code == 0 and "internal error" not in err, out + err


def test_projects_outside_git_do_not_share_an_id_and_prune_needs_a_stable_one(
    project, modal_world, cli, monkeypatch, tmp_path_factory
):
    monkeypatch.delenv("DEPLOYER_PROJECT")
    team_a, team_b = tmp_path_factory.mktemp("team-a"), tmp_path_factory.mktemp("team-b")
    for root, name in ((team_a, "alpha"), (team_b, "beta")):
        (root / "deployments").mkdir()
        (root / "deployments" / f"{name}.yaml").write_text(FAST)
    monkeypatch.chdir(team_a)
    assert cli("apply", "--yes")[0] == 0
    monkeypatch.chdir(team_b)
    code, out, _ = cli("apply", "--yes", "--prune")
    assert code == 0 and "orphan" not in out  # alpha is team A's, not an orphan of team B
    assert modal_world.fake.state["apps"]["alpha"]["state"] == "deployed"

    (team_b / "deployments" / "beta.yaml").unlink()
    (team_b / "deployments" / "gamma.yaml").write_text(FAST)
    code, _, err = cli("apply", "--yes", "--prune")
    assert code == 2 and "refusing to prune" in err and "DEPLOYER_PROJECT" in err
    assert modal_world.fake.state["apps"]["beta"]["state"] == "deployed"


def test_the_project_name_from_a_remote_never_carries_its_credentials(project, monkeypatch):
    from deployer.deploy.desired import project_for

    monkeypatch.delenv("DEPLOYER_PROJECT", raising=False)
    git(project.root, "init", "-q")
    for url in (
        "https://x-access-token:ghp_SECRET@github.com/Acme/Serving.git",
        "https://u:p@ss-SECRET@github.com/acme/serving?token=SECRET",
        "git@github.com:acme/serving.git",
    ):
        git(project.root, "remote", "remove", "origin") if "origin" in git(
            project.root, "remote"
        ) else None
        git(project.root, "remote", "add", "origin", url)
        assert project_for(project.deployments).name == "github.com/acme/serving"
